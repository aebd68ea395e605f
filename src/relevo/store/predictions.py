"""The prediction log in the store: bulk inserts, counts and ordered reads for export."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from relevo.store.bulk import BulkInsert
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
    "role",
)

#: one stored row, values in COLUMNS order (features and output as JSON text)
Row = tuple[Any, ...]


class PredictionRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = BulkInsert(engine, predictions, COLUMNS, key="id", time="created_at")

    def insert_many(self, rows: Sequence[Row]) -> int:
        """Insert rows (tuples in COLUMNS order, created_at an aware datetime) in one
        transaction: PostgreSQL through COPY, SQLite through multi-row INSERTs (see
        `relevo.store.bulk`). Idempotent: rows whose id is already stored are skipped.
        Returns the rows handed in."""
        return self._insert(rows)

    def count(self, deployment: str | None = None) -> int:
        query = select(func.count()).select_from(predictions)
        if deployment is not None:
            query = query.where(predictions.c.deployment == deployment)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def ids(self, deployment: str) -> list[str]:
        """Every stored prediction id of `deployment` (for checks and tests)."""
        query = select(predictions.c.id).where(predictions.c.deployment == deployment)
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(query)]

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
