"""challengers, rollout plans, rollback, audit trail, leases, prediction roles (issue 14)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 01:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot drop a column in place, it copies the table (rows kept)
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("challenger_name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("challenger_version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("steps", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("step", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.add_column(
            sa.Column("min_step_rows", sa.Integer(), server_default=sa.text("500"), nullable=False)
        )
        batch_op.add_column(
            sa.Column("min_step_seconds", sa.Float(), server_default=sa.text("300"), nullable=False)
        )
        batch_op.add_column(sa.Column("step_started_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("manual", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(
            sa.Column("mirror", sa.Float(), server_default=sa.text("1"), nullable=False)
        )
        batch_op.add_column(sa.Column("previous_name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("previous_version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("bake_seconds", sa.Float(), server_default=sa.text("3600"), nullable=False)
        )
        batch_op.add_column(sa.Column("log_extra", sa.JSON(), nullable=True))

    # a candidate of 0001 was a version of the champion's own model
    op.execute(
        "UPDATE deployments SET challenger_name = model_name, "
        "challenger_version = candidate_version WHERE candidate_version IS NOT NULL"
    )
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_column("candidate_version")

    with op.batch_alter_table("deployment_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("actor", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))

    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("role", sa.String(length=20), server_default="champion", nullable=False)
        )

    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )


def downgrade() -> None:
    op.drop_table("leases")
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_column("role")
    with op.batch_alter_table("deployment_events", schema=None) as batch_op:
        batch_op.drop_column("reason")
        batch_op.drop_column("actor")
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("candidate_version", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE deployments SET candidate_version = challenger_version "
        "WHERE challenger_name = model_name"
    )
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        for column in (
            "log_extra",
            "bake_seconds",
            "promoted_at",
            "previous_version",
            "previous_name",
            "mirror",
            "manual",
            "step_started_at",
            "min_step_seconds",
            "min_step_rows",
            "step",
            "steps",
            "challenger_version",
            "challenger_name",
        ):
            batch_op.drop_column(column)
