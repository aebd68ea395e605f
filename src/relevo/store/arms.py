"""Per-model numbers of a deployment read from the prediction log: what the rollout gates and
`relevo status` compare.

Every replica logs to the same store, so these numbers are the whole fleet's, whichever
replica evaluates (`relevo.routing.tally` keeps them up to date without reading every row at
every look). A challenger's failures are the rows logged with the role `fallback` (the champion
answered rows its challenger failed on), so they are shared the same way; each names the
challenger that failed on it (NULL on rows stored before migration 0010). A batch run's rows
count as rows, but their latency (their chunk's model call) is no request's: none is read.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine

from relevo.store.tables import predictions


class ArmRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def outputs(
        self,
        deployment: str,
        model_name: str,
        model_version: int,
        role: str,
        since: datetime | None = None,
        limit: int = 5000,
    ) -> list[str]:
        """The latest `limit` logged outputs (JSON text) of one model in one role."""
        p = predictions.c
        query = (
            select(p.output)
            .where(
                p.deployment == deployment,
                p.model_name == model_name,
                p.model_version == model_version,
                p.role == role,
            )
            .order_by(p.created_at.desc())
            .limit(limit)
        )
        if since is not None:
            query = query.where(p.created_at >= since)
        with self.engine.connect() as conn:
            return [str(o) for (o,) in conn.execute(query)]

    def logged(
        self, deployment: str, start: datetime | None, end: datetime | None
    ) -> list[tuple[str, int, str, float | None, str | None]]:
        """(model_name, model_version, role, latency_ms, challenger) of every row logged for
        `deployment` with `start` <= created_at < `end` (None: unbounded), read through the
        deployment's (deployment, created_at) index. The latency is None for a batch run's row
        (its chunk's model call, no request's); the challenger is the one a `fallback` row
        fell back from ("name:version"), None on other rows and on older fallback rows."""
        p = predictions.c
        query = select(
            p.model_name, p.model_version, p.role, p.latency_ms, p.source, p.challenger
        ).where(p.deployment == deployment)
        if start is not None:
            query = query.where(p.created_at >= start)
        if end is not None:
            query = query.where(p.created_at < end)
        with self.engine.connect() as conn:
            return [
                (str(a), int(b), str(c), None if s is not None else float(d), ch)
                for a, b, c, d, s, ch in conn.execute(query)
            ]
