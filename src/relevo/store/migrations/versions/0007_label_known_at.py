"""labels: when the truth became known, beside when it was uploaded

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 17:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("labels") as batch:
        batch.add_column(sa.Column("known_at", sa.DateTime(timezone=True), nullable=True))
    # labels stored before knew no other time than their upload's
    op.execute("UPDATE labels SET known_at = received_at")


def downgrade() -> None:
    with op.batch_alter_table("labels") as batch:
        batch.drop_column("known_at")
