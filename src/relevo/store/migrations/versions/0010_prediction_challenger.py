"""prediction log: a fallback row names the challenger that failed on it

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # rows stored before have none (NULL): which challenger a fallback row of theirs fell back
    # from is not known any more, and the gates charge it to the current one, as before
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("challenger", sa.String(length=220), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("challenger")
