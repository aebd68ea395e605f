"""prediction log: a multi-row entry's features stored once, column by column (issue 13)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 12:00:00
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prediction_inputs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("deployment", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("features", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prediction_inputs")),
    )
    op.create_index(
        "ix_prediction_inputs_deployment_created",
        "prediction_inputs",
        ["deployment", "created_at"],
    )
    # rows stored before keep their features inline (both columns null)
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("inputs", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("inputs_row", sa.Integer(), nullable=True))


def downgrade() -> None:
    # the rows whose features were stored once per entry get them back inline first: entry
    # by entry (a page of entries at a time), each entry's rows found through an index made
    # for the purpose (an entry whose rows were stored inline before has none: skipped)
    conn = op.get_bind()
    op.create_index("ix_predictions_inputs_downgrade", "predictions", ["inputs"])
    last = ""
    while True:
        entries = conn.execute(
            sa.text(
                "SELECT id, features FROM prediction_inputs WHERE id > :last ORDER BY id LIMIT 500"
            ),
            {"last": last},
        ).fetchall()
        if not entries:
            break
        for key, text in entries:
            columns = json.loads(text)
            rows = conn.execute(
                sa.text("SELECT id, inputs_row FROM predictions WHERE inputs = :k"), {"k": key}
            ).fetchall()
            if rows:
                conn.execute(
                    sa.text("UPDATE predictions SET features = :f WHERE id = :i"),
                    [{"i": pid, "f": _row(columns, at)} for pid, at in rows],
                )
        last = entries[-1][0]
    op.drop_index("ix_predictions_inputs_downgrade", table_name="predictions")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("inputs_row")
        batch.drop_column("inputs")
    op.drop_index("ix_prediction_inputs_deployment_created", table_name="prediction_inputs")
    op.drop_table("prediction_inputs")


def _row(columns: dict, at: int) -> str:
    """Row `at`'s features as the JSON object an inline row keeps."""
    return json.dumps(
        {name: values[at] for name, values in columns.items()},
        separators=(",", ":"),
        ensure_ascii=False,
    )
