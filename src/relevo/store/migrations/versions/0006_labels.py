"""labels: ground truth of logged predictions, by prediction id (issue 16)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 05:00:02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "labels",
        sa.Column("prediction_id", sa.String(length=32), nullable=False),
        sa.Column("deployment", sa.String(length=200), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("predicted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revisions", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.PrimaryKeyConstraint("prediction_id", name=op.f("pk_labels")),
    )


def downgrade() -> None:
    op.drop_table("labels")
