"""Production profile buckets in the store: one row per (deployment, model version, role,
bucket start, replica), upserted by that replica, read by windows (`relevo.monitoring.windows`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from relevo.store.tables import profile_buckets

_KEY = ("deployment", "model_name", "model_version", "role", "start", "replica")


class ProfileRow(NamedTuple):
    deployment: str
    model_name: str
    model_version: int
    role: str
    start: datetime
    seconds: int
    replica: str
    rows: int
    payload: str  # JSON text (`BucketProfile.to_dict`)


class ProfileRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        self._insert: Any = dialect.insert

    def upsert(self, rows: Sequence[ProfileRow], now: datetime | None = None) -> int:
        """Insert or replace these bucket rows (a replica writes only its own), in one
        transaction."""
        if not rows:
            return 0
        now = now or datetime.now(UTC)
        values = [{**r._asdict(), "updated_at": now} for r in rows]
        stmt = self._insert(profile_buckets)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(_KEY),
            set_={
                "seconds": stmt.excluded.seconds,
                "rows": stmt.excluded.rows,
                "payload": stmt.excluded.payload,
                "updated_at": stmt.excluded.updated_at,
            },
        )
        with self.engine.begin() as conn:
            conn.execute(stmt, values)
        return len(rows)

    def get(
        self,
        deployment: str,
        model_name: str,
        model_version: int,
        role: str,
        start: datetime,
        replica: str,
    ) -> ProfileRow | None:
        c = profile_buckets.c
        query = select(*_columns()).where(
            c.deployment == deployment,
            c.model_name == model_name,
            c.model_version == model_version,
            c.role == role,
            c.start == start,
            c.replica == replica,
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return ProfileRow(*row) if row is not None else None

    def fetch(
        self,
        deployment: str,
        since: datetime,
        until: datetime,
        *,
        model: tuple[str, int] | None = None,
        role: str | None = None,
    ) -> list[ProfileRow]:
        """Bucket rows starting in [since, until), in a canonical order (start, model, role,
        replica) so that merges do not depend on how rows were written."""
        c = profile_buckets.c
        query = select(*_columns()).where(
            c.deployment == deployment, c.start >= since, c.start < until
        )
        if model is not None:
            query = query.where(c.model_name == model[0], c.model_version == model[1])
        if role is not None:
            query = query.where(c.role == role)
        query = query.order_by(c.start, c.model_name, c.model_version, c.role, c.replica)
        with self.engine.connect() as conn:
            return [ProfileRow(*r) for r in conn.execute(query)]

    def models(
        self, deployment: str, since: datetime, until: datetime
    ) -> dict[tuple[tuple[str, int], str], int]:
        """Rows profiled per ((model name, version), role) in [since, until)."""
        c = profile_buckets.c
        query = (
            select(c.model_name, c.model_version, c.role, func.sum(c.rows))
            .where(c.deployment == deployment, c.start >= since, c.start < until)
            .group_by(c.model_name, c.model_version, c.role)
        )
        with self.engine.connect() as conn:
            return {((n, int(v)), r): int(s or 0) for n, v, r, s in conn.execute(query)}

    def volumes(
        self, deployment: str, since: datetime, until: datetime
    ) -> list[tuple[datetime, str, int]]:
        """(start, replica, rows answered) per bucket and replica, shadow rows aside."""
        c = profile_buckets.c
        query = (
            select(c.start, c.replica, func.sum(c.rows))
            .where(
                c.deployment == deployment,
                c.start >= since,
                c.start < until,
                c.role != "shadow",
            )
            .group_by(c.start, c.replica)
            .order_by(c.start, c.replica)
        )
        with self.engine.connect() as conn:
            return [(s, r, int(n or 0)) for s, r, n in conn.execute(query)]

    def count(self, deployment: str | None = None) -> int:
        query = select(func.count()).select_from(profile_buckets)
        if deployment is not None:
            query = query.where(profile_buckets.c.deployment == deployment)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)


def _columns() -> list[Any]:
    c = profile_buckets.c
    return [
        c.deployment,
        c.model_name,
        c.model_version,
        c.role,
        c.start,
        c.seconds,
        c.replica,
        c.rows,
        c.payload,
    ]
