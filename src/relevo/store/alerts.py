"""Alerting in the store: alert states, the tracks behind "N of M" persistence, silences, the
per-deployment monitoring settings, and the few numbers the built-in rules read (volumes per
window and replica, failed rows, latency, the gates' rollbacks)."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import Engine, RowMapping

from relevo.monitoring.alerts.state import Alert, Key, Silence, Track
from relevo.store.tables import (
    alert_observations,
    alert_silences,
    alerts,
    deployment_events,
    deployments,
    predictions,
    profile_buckets,
)

#: a time range [since, until)
Range = tuple[datetime, datetime]
#: rows per replica, one mapping per range asked
Counted = list[dict[str, int]]
#: (when, why) of gate rollbacks
Rollbacks = list[tuple[datetime, str]]
#: model versions, (name, version)
Models = Sequence[tuple[str, int]]

_ALERT_FIELDS = (
    "deployment",
    "rule",
    "subject",
    "state",
    "severity",
    "message",
    "incident",
    "started_at",
    "updated_at",
    "value",
    "threshold",
    "resolved_at",
    "notified",
)


def _alert(row: RowMapping) -> Alert:
    return Alert(**{k: row[k] for k in _ALERT_FIELDS}, id=row["id"])


def _track(row: RowMapping) -> Track:
    return Track(
        deployment=row["deployment"] or None,
        rule=row["rule"],
        subject=row["subject"],
        recent=row["recent"],
        firing=bool(row["firing"]),
        severity=row["severity"],
        message=row["message"],
        evaluated_at=row["evaluated_at"],
        value=row["value"],
        threshold=row["threshold"],
    )


class AlertRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ------------------------------------------------------------------ states

    def tracks(self) -> dict[Key, Track]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(alert_observations)).mappings()
            found = [_track(r) for r in rows]
        return {t.key: t for t in found}

    def open_alerts(self) -> dict[Key, Alert]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(alerts).where(alerts.c.state == "firing")).mappings()
            found = [_alert(r) for r in rows]
        return {a.key: a for a in found}

    def save(self, tracks: Sequence[Track], changed: Sequence[Alert]) -> builtins.list[Alert]:
        """Store an evaluation's tracks and alerts in one transaction; the alerts with ids."""
        out: builtins.list[Alert] = []
        with self.engine.begin() as conn:
            for t in tracks:
                values = {
                    "recent": t.recent,
                    "firing": t.firing,
                    "value": t.value,
                    "threshold": t.threshold,
                    "severity": t.severity,
                    "message": t.message,
                    "evaluated_at": t.evaluated_at,
                }
                o = alert_observations.c
                where = and_(
                    o.deployment == (t.deployment or ""), o.rule == t.rule, o.subject == t.subject
                )
                if not conn.execute(
                    update(alert_observations).where(where).values(values)
                ).rowcount:
                    conn.execute(
                        insert(alert_observations).values(
                            deployment=t.deployment or "", rule=t.rule, subject=t.subject, **values
                        )
                    )
            for a in changed:
                values = {k: getattr(a, k) for k in _ALERT_FIELDS}
                if a.id is None:
                    new_id = conn.execute(insert(alerts).values(values).returning(alerts.c.id))
                    a = replace(a, id=int(new_id.scalar_one()))
                else:
                    conn.execute(update(alerts).where(alerts.c.id == a.id).values(values))
                out.append(a)
        return out

    def forget_tracks(self, keep: Iterable[str]) -> int:
        """Drop the tracks of deployments not in `keep` (deleted ones); "" is the server's."""
        kept = [*keep, ""]
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    delete(alert_observations).where(alert_observations.c.deployment.not_in(kept))
                ).rowcount
            )

    def list(
        self, deployment: str | None = None, *, firing_only: bool = True, limit: int = 500
    ) -> builtins.list[Alert]:
        """Alerts, newest first: the firing ones, or every incident kept."""
        query = select(alerts).order_by(alerts.c.started_at.desc(), alerts.c.id.desc())
        if deployment is not None:
            query = query.where(alerts.c.deployment == deployment)
        if firing_only:
            query = query.where(alerts.c.state == "firing")
        with self.engine.connect() as conn:
            return [_alert(r) for r in conn.execute(query.limit(limit)).mappings()]

    # ------------------------------------------------------------------ silences

    def silences(self, active_at: datetime | None = None) -> builtins.list[Silence]:
        query = select(alert_silences).order_by(alert_silences.c.id)
        if active_at is not None:
            query = query.where(alert_silences.c.until > active_at)
        with self.engine.connect() as conn:
            return [Silence(**dict(r)) for r in conn.execute(query).mappings()]

    def add_silence(self, silence: Silence) -> Silence:
        values = silence.to_dict()
        values.pop("id")
        values["until"], values["created_at"] = silence.until, silence.created_at
        with self.engine.begin() as conn:
            key = conn.execute(
                insert(alert_silences).values(values).returning(alert_silences.c.id)
            ).scalar_one()
        return replace(silence, id=int(key))

    # ------------------------------------------------------------------ settings

    def monitoring(self, deployment: str) -> dict[str, Any] | None:
        """The deployment's monitoring settings ({} when it has none); None: no deployment."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(deployments.c.monitoring).where(deployments.c.name == deployment)
            ).first()
        return None if row is None else dict(row[0] or {})

    def all_monitoring(self) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(deployments.c.name, deployments.c.monitoring)).all()
        return {name: dict(value or {}) for name, value in rows}

    def set_monitoring(self, deployment: str, settings: Mapping[str, Any]) -> bool:
        """Replace the settings; the routing state and its revision stay as they are."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(deployments)
                .where(deployments.c.name == deployment)
                .values(monitoring=dict(settings))
            ).rowcount
        return bool(done)

    # ------------------------------------------------------------------ numbers the rules read

    def first_row(self, deployment: str) -> datetime | None:
        """When the deployment's first row was profiled or logged."""
        with self.engine.connect() as conn:
            bucket = conn.execute(
                select(func.min(profile_buckets.c.start)).where(
                    profile_buckets.c.deployment == deployment
                )
            ).scalar()
            logged = conn.execute(
                select(func.min(predictions.c.created_at)).where(
                    predictions.c.deployment == deployment
                )
            ).scalar()
        found = [t for t in (bucket, logged) if t is not None]
        return min(found) if found else None

    def has_buckets(self, deployment: str, since: datetime) -> bool:
        with self.engine.connect() as conn:
            return (
                conn.execute(
                    select(profile_buckets.c.id)
                    .where(profile_buckets.c.deployment == deployment)
                    .where(profile_buckets.c.start >= since)
                    .limit(1)
                ).first()
                is not None
            )

    def bucket_volumes(self, deployment: str, ranges: Sequence[Range]) -> Counted:
        """Rows per replica in each range, from the profile buckets that start in it."""
        b = profile_buckets.c
        out = []
        with self.engine.connect() as conn:
            for since, until in ranges:
                rows = conn.execute(
                    select(b.replica, func.sum(b.rows))
                    .where(b.deployment == deployment, b.start >= since, b.start < until)
                    .group_by(b.replica)
                ).all()
                out.append({str(r): int(n or 0) for r, n in rows})
        return out

    def logged_volumes(self, deployment: str, ranges: Sequence[Range]) -> Counted:
        """Rows logged in each range (one entry under replica "": the log keeps no replica)."""
        p = predictions.c
        out = []
        with self.engine.connect() as conn:
            for since, until in ranges:
                n = conn.execute(
                    select(func.count()).where(
                        p.deployment == deployment, p.created_at >= since, p.created_at < until
                    )
                ).scalar()
                out.append({"": int(n or 0)})
        return out

    def logged_failures(
        self, deployment: str, since: datetime, until: datetime, models: Models
    ) -> tuple[int, int]:
        """(rows, rows failed on) of `models` logged in [since, until): the rows they answered
        and the `fallback` rows of a challenger among them (it failed, the champion answered);
        another model's rows and failures (an old champion's, a withdrawn challenger's) are
        left out."""
        p = predictions.c
        refs = {f"{name}:{version}" for name, version in models}
        query = (
            select(p.role, p.challenger, func.count())
            .where(
                p.deployment == deployment,
                p.created_at >= since,
                p.created_at < until,
                or_(_answered_by(models), p.challenger.in_(refs)),
            )
            .group_by(p.role, p.challenger)
        )
        rows = failed = 0
        with self.engine.connect() as conn:
            for role, challenger, n in conn.execute(query):
                rows += int(n) if role != "shadow" else 0
                # a fallback row stored before the log named its challenger (migration 0010)
                # is charged to the models of now, as it always was
                if role == "fallback" and (challenger is None or challenger in refs):
                    failed += int(n)
        return rows, failed

    def latency_quantile(
        self, deployment: str, since: datetime, until: datetime, models: Models, q: float = 0.99
    ) -> tuple[int, float | None]:
        """(rows, the `q` quantile of their latency in ms, nearest rank) of the rows `models`
        answered to requests: a batch run's rows (`source` set) carry their chunk's model call,
        no request's latency."""
        p = predictions.c
        where = [
            p.deployment == deployment,
            p.created_at >= since,
            p.created_at < until,
            p.role != "shadow",
            p.source.is_(None),
            _answered_by(models),
        ]
        with self.engine.connect() as conn:
            n = int(conn.execute(select(func.count()).where(*where)).scalar() or 0)
            if n == 0:
                return 0, None
            found = conn.execute(
                select(p.latency_ms)
                .where(*where)
                .order_by(p.latency_ms.desc())
                .offset(int(n * (1.0 - q)))
                .limit(1)
            ).scalar()
        return n, None if found is None else float(found)

    def gate_rollbacks(self, deployment: str, since: datetime) -> Rollbacks:
        """(when, why) of every rollback a gate made since `since`, oldest first."""
        e = deployment_events.c
        query = (
            select(e.created_at, e.reason)
            .where(
                e.deployment == deployment,
                e.action == "rollback",
                e.actor == "gate",
                e.created_at >= since,
            )
            .order_by(e.id)
        )
        with self.engine.connect() as conn:
            return [(when, why or "") for when, why in conn.execute(query)]


def _answered_by(models: Models) -> ColumnElement[bool]:
    """Logged rows answered by one of `models`."""
    p = predictions.c
    return or_(
        *(and_(p.model_name == name, p.model_version == version) for name, version in models)
    )
