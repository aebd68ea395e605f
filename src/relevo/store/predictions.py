"""The prediction log in the store: bulk inserts, counts and ordered reads for export."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

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


class PredictionRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # The prediction log's bulk write is hot: one plain executemany, without SQLAlchemy's
        # per-row parameter processing (measured at 5 us of the ~11 us a row cost). ON
        # CONFLICT DO NOTHING: a retry after a write that did commit (the reply to COMMIT was
        # lost) must not fail on the ids it already stored.
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._insert_sql = (
            f"INSERT INTO {predictions.name} ({', '.join(COLUMNS)}) "
            f"VALUES ({', '.join([mark] * len(COLUMNS))}) ON CONFLICT (id) DO NOTHING"
        )
        # timestamps bound exactly as SQLAlchemy binds them (SQLite: UTC text)
        self._bind_time = predictions.c.created_at.type.bind_processor(engine.dialect)

    def insert_many(self, rows: Sequence[dict[str, Any]]) -> int:
        """Insert rows (dicts keyed like COLUMNS; features/output as JSON text) in one go.

        Idempotent: rows whose id is already stored are skipped, so a write can be retried.
        Returns the number of rows handed in.
        """
        if not rows:
            return 0
        bind = self._bind_time
        params = []
        last: Any = None
        bound: Any = None
        for r in rows:
            when = r["created_at"]
            if when is not last:  # the rows of one request share their timestamp
                last, bound = when, (bind(when) if bind is not None else when)
            params.append(
                (
                    r["id"],
                    r["deployment"],
                    r["model_name"],
                    r["model_version"],
                    bound,
                    r["routing_key"],
                    r["features"],
                    r["output"],
                    r["latency_ms"],
                )
            )
        with self.engine.begin() as conn:
            conn.exec_driver_sql(self._insert_sql, params)
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
