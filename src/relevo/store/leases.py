"""Leases: a named role that one holder at a time may play across replicas, until it expires.

Used so that only one of several servers sharing a database evaluates rollouts. A holder keeps
its lease by renewing it well before it expires; a holder that dies simply lets it lapse, and
another takes it over. Expiry is compared on the callers' clocks (kept in sync by NTP in any
multi-replica setup); `now` can be passed for tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, delete, insert, literal, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from relevo.store.tables import UTCDateTime, leases


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    expires_at: datetime
    acquired_at: datetime


class LeaseRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def acquire(self, name: str, holder: str, ttl_s: float, *, now: datetime | None = None) -> bool:
        """Take lease `name` for `ttl_s` seconds if it is free, expired or already `holder`'s
        (then this renews it); False when someone else holds it."""
        now = now or datetime.now(UTC)
        expires = now + timedelta(seconds=ttl_s)
        with self.engine.begin() as conn:
            taken = conn.execute(
                update(leases)
                .where(
                    leases.c.name == name,
                    or_(leases.c.holder == holder, leases.c.expires_at <= now),
                )
                .values(
                    holder=holder,
                    expires_at=expires,
                    # a takeover starts a new tenure; a renewal keeps the first acquisition
                    acquired_at=_case_acquired(holder, now),
                )
            ).rowcount
            if taken:
                return True
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(leases).values(
                        name=name, holder=holder, expires_at=expires, acquired_at=now
                    )
                )
        except IntegrityError:
            return False  # held by someone else (or taken by them this very moment)
        return True

    def renew(self, name: str, holder: str, ttl_s: float, *, now: datetime | None = None) -> bool:
        """Extend `holder`'s lease; False when it is no longer theirs (it lapsed and was taken)."""
        now = now or datetime.now(UTC)
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    update(leases)
                    .where(leases.c.name == name, leases.c.holder == holder)
                    .values(expires_at=now + timedelta(seconds=ttl_s))
                ).rowcount
            )

    def release(self, name: str, holder: str) -> bool:
        """Give the lease up at once (only `holder`'s own); whether there was one to give up."""
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    delete(leases).where(and_(leases.c.name == name, leases.c.holder == holder))
                ).rowcount
            )

    def get(self, name: str, *, now: datetime | None = None) -> Lease | None:
        """The lease's current holder, or None when it is free or has expired."""
        now = now or datetime.now(UTC)
        with self.engine.connect() as conn:
            row = conn.execute(select(leases).where(leases.c.name == name)).mappings().first()
        if row is None or row["expires_at"] <= now:
            return None
        return Lease(**row)


def _case_acquired(holder: str, now: datetime) -> ColumnElement[datetime]:
    return case(
        (leases.c.holder == holder, leases.c.acquired_at), else_=literal(now, UTCDateTime())
    )
