"""shadow outputs: a shadow challenger's output (or error) per prediction id (issue 14)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 02:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shadow_predictions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("deployment", sa.String(length=200), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shadow_predictions")),
    )
    op.create_index(
        "ix_shadow_predictions_deployment_created",
        "shadow_predictions",
        ["deployment", "created_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_shadow_predictions_deployment_created", table_name="shadow_predictions")
    op.drop_table("shadow_predictions")
