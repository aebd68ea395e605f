"""prediction log: a batch run's rows marked, so request latency statistics leave them out

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # rows stored before read as requests' rows (NULL): which of them a batch run logged is
    # not known any more
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("source", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("source")
