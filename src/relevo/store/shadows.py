"""Shadow outputs in the store: written by the shadow worker, read beside the champion's
logged answer of the same prediction id for the comparison."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from relevo.store.bulk import BulkInsert
from relevo.store.tables import predictions, shadow_predictions


class ShadowRow(NamedTuple):
    id: str
    deployment: str
    model_name: str
    model_version: int
    created_at: datetime
    output: str | None  # JSON text; None when the shadow failed
    error: str | None
    latency_ms: float


class Pair(NamedTuple):
    """A shadow's output beside the champion's for one prediction id."""

    champion: str | None  # JSON text (None while the champion's row is not stored yet)
    shadow: str | None
    error: str | None
    champion_latency_ms: float | None
    shadow_latency_ms: float


class ShadowRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = BulkInsert(
            engine, shadow_predictions, ShadowRow._fields, key="id", time="created_at"
        )

    def insert_many(self, rows: Sequence[ShadowRow]) -> int:
        """Insert shadow outputs in one transaction (see `relevo.store.bulk`); an id already
        stored is skipped."""
        return self._insert(rows)

    def count(self, deployment: str) -> int:
        query = select(func.count()).where(shadow_predictions.c.deployment == deployment)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def pairs(
        self,
        deployment: str,
        model_name: str,
        model_version: int,
        since: datetime | None = None,
        limit: int = 100_000,
    ) -> list[Pair]:
        """The latest `limit` shadow rows of this model with the champion's answer beside."""
        s, p = shadow_predictions.c, predictions.c
        query: Any = (
            select(s.output, s.error, s.latency_ms, p.output, p.latency_ms)
            .select_from(shadow_predictions.outerjoin(predictions, p.id == s.id))
            .where(
                s.deployment == deployment,
                s.model_name == model_name,
                s.model_version == model_version,
            )
            .order_by(s.created_at.desc())
            .limit(limit)
        )
        if since is not None:
            query = query.where(s.created_at >= since)
        with self.engine.connect() as conn:
            return [Pair(c, o, e, cl, sl) for o, e, sl, c, cl in conn.execute(query)]
