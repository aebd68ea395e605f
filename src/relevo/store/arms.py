"""Per-model numbers of a deployment read from the prediction log: what the rollout gates and
`relevo status` compare.

Every replica logs to the same store, so these counts are the whole fleet's, whichever replica
evaluates. A challenger's failures are the rows logged with the role `fallback` (the champion
answered rows its challenger failed on), so they are shared the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from relevo.store.tables import predictions


class ArmCount(NamedTuple):
    model_name: str
    model_version: int
    role: str
    rows: int


class ArmRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def counts(self, deployment: str, since: datetime | None = None) -> list[ArmCount]:
        """Rows logged per (model, role) for `deployment`, since `since` (inclusive)."""
        p = predictions.c
        query = (
            select(p.model_name, p.model_version, p.role, func.count())
            .where(p.deployment == deployment)
            .group_by(p.model_name, p.model_version, p.role)
        )
        if since is not None:
            query = query.where(p.created_at >= since)
        with self.engine.connect() as conn:
            return [ArmCount(str(a), int(b), str(c), int(d)) for a, b, c, d in conn.execute(query)]

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

    def latency_quantile(
        self,
        deployment: str,
        model_name: str,
        model_version: int,
        role: str,
        since: datetime | None = None,
        q: float = 0.99,
    ) -> float | None:
        """The `q` quantile of the logged request latency (ms) of one model in one role (the
        nearest-rank value, same on SQLite and PostgreSQL); None without rows."""
        p = predictions.c
        where = [
            p.deployment == deployment,
            p.model_name == model_name,
            p.model_version == model_version,
            p.role == role,
        ]
        if since is not None:
            where.append(p.created_at >= since)
        with self.engine.connect() as conn:
            n = int(conn.execute(select(func.count()).where(*where)).scalar() or 0)
            if n == 0:
                return None
            rank = int(n * (1.0 - q))  # rows above the quantile
            found = conn.execute(
                select(p.latency_ms)
                .where(*where)
                .order_by(p.latency_ms.desc())
                .offset(rank)
                .limit(1)
            ).scalar()
        return None if found is None else float(found)
