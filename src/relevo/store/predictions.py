"""The prediction log in the store: bulk inserts, counts and ordered reads for export."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.sql.dml import Insert

from relevo.store.tables import predictions

COLUMNS = (
    "id",
    "deployment",
    "model_name",
    "model_version",
    "created_at",
    "routing_key",
    "features",
    "output",
    "latency_ms",
)


def _insert_ignoring_duplicates(dialect: str) -> Insert:
    if dialect == "postgresql":
        return postgresql.insert(predictions).on_conflict_do_nothing(index_elements=["id"])
    return sqlite.insert(predictions).on_conflict_do_nothing(index_elements=["id"])


class PredictionRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # a retry after a write that did commit (the reply to COMMIT lost) must not fail on
        # the ids it already stored
        self._insert = _insert_ignoring_duplicates(engine.dialect.name)

    def insert_many(self, rows: Sequence[dict[str, Any]]) -> int:
        """Insert rows (dicts keyed like COLUMNS; features/output as JSON text) in one go.

        Idempotent: rows whose id is already stored are skipped, so a write can be retried.
        Returns the number of rows handed in.
        """
        if not rows:
            return 0
        with self.engine.begin() as conn:
            conn.execute(self._insert, list(rows))
        return len(rows)

    def count(self, deployment: str | None = None) -> int:
        query = select(func.count()).select_from(predictions)
        if deployment is not None:
            query = query.where(predictions.c.deployment == deployment)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def iter_rows(
        self, deployment: str, chunk_size: int = 10_000
    ) -> Iterator[list[dict[str, Any]]]:
        """The deployment's logged predictions in id (= time) order, in chunks."""
        last = ""
        while True:
            query = (
                select(predictions)
                .where(predictions.c.deployment == deployment, predictions.c.id > last)
                .order_by(predictions.c.id)
                .limit(chunk_size)
            )
            with self.engine.connect() as conn:
                rows = [dict(r) for r in conn.execute(query).mappings()]
            if not rows:
                return
            yield rows
            last = rows[-1]["id"]
