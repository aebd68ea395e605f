"""profile buckets: production profiles per deployment, model, role, time bucket, replica (issue 15)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 05:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "profile_buckets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment", sa.String(length=200), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seconds", sa.Integer(), nullable=False),
        sa.Column("replica", sa.String(length=200), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profile_buckets")),
        sa.UniqueConstraint(
            "deployment",
            "model_name",
            "model_version",
            "role",
            "start",
            "replica",
            name="uq_profile_buckets_key",
        ),
    )
    op.create_index(
        "ix_profile_buckets_deployment_start", "profile_buckets", ["deployment", "start"]
    )


def downgrade() -> None:
    op.drop_index("ix_profile_buckets_deployment_start", table_name="profile_buckets")
    op.drop_table("profile_buckets")
