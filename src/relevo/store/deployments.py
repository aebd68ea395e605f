"""Deployments and their audit trail in the store."""

from __future__ import annotations

import builtins
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import IntegrityError

from relevo.errors import ConflictError
from relevo.routing.deployment import Deployment
from relevo.routing.events import DeploymentEvent
from relevo.store.rows import from_row
from relevo.store.tables import deployment_events, deployments

#: PostgreSQL: one deployment save at a time (relevo's advisory locks: 7461626 migrations,
#: (7461627, 0) deployment saves, (7461628, hash of the name) model versions)
_SAVE_LOCK = text("SELECT pg_advisory_xact_lock(7461627, 0)")

#: the stored fields of a Deployment besides its name and revision (the primary key and the
#: counter the database bumps)
_FIELDS = (
    "model_name",
    "model_version",
    "strategy",
    "challenger_name",
    "challenger_version",
    "weight",
    "key_column",
    "steps",
    "step",
    "min_step_rows",
    "min_step_seconds",
    "step_started_at",
    "manual",
    "mirror",
    "previous_name",
    "previous_version",
    "promoted_at",
    "bake_seconds",
    "log_extra",
)


class _CreatedMeanwhile(Exception):
    """A concurrent save created the deployment between our UPDATE and INSERT."""


class StaleStateError(ConflictError):
    """The deployment changed since the state a change was computed from was read."""


def _to_deployment(row: RowMapping) -> Deployment:
    values = dict(row)
    # monitoring settings are monitoring's (relevo.monitoring), not the routing state
    values.pop("monitoring", None)
    values["steps"] = tuple(values["steps"] or ())
    values["log_extra"] = tuple(values["log_extra"] or ())
    values["manual"] = bool(values["manual"])
    return Deployment(**values)


def _to_values(state: Deployment) -> dict[str, Any]:
    values = {name: getattr(state, name) for name in _FIELDS}
    values["steps"] = list(state.steps) if state.steps else None
    values["log_extra"] = list(state.log_extra) if state.log_extra else None
    return values


def _to_event(row: RowMapping) -> DeploymentEvent:
    return from_row(DeploymentEvent, row)


class DeploymentRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, name: str) -> Deployment | None:
        if "\x00" in name:  # no row can match, and PostgreSQL fails on a NUL in text
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(deployments).where(deployments.c.name == name)).mappings()
            first = row.first()
        return _to_deployment(first) if first is not None else None

    def list(self) -> list[Deployment]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(deployments).order_by(deployments.c.name)).mappings()
            return [_to_deployment(r) for r in rows]

    def history(self, name: str) -> builtins.list[DeploymentEvent]:
        """The audit trail of deployment `name`, oldest first."""
        query = (
            select(deployment_events)
            .where(deployment_events.c.deployment == name)
            .order_by(deployment_events.c.id)
        )
        with self.engine.connect() as conn:
            return [_to_event(r) for r in conn.execute(query).mappings()]

    def fingerprint(self) -> tuple[int, int]:
        """(number of deployments, id of the latest event): changes with every save, since each
        save records an event in its own transaction."""
        query = select(
            select(func.count()).select_from(deployments).scalar_subquery(),
            select(func.coalesce(func.max(deployment_events.c.id), 0)).scalar_subquery(),
        )
        with self.engine.connect() as conn:
            count, latest = conn.execute(query).one()
        return int(count), int(latest)

    def save(
        self,
        state: Deployment,
        action: str,
        *,
        actor: str | None = None,
        reason: str | None = None,
        expected_revision: int | None = None,
    ) -> Deployment:
        """Create or replace the deployment's state, bumping its revision, and record the audit
        event, both in one transaction.

        The bump happens in the database (`revision = revision + 1`), so concurrent saves each
        get a revision of their own and the returned state carries the one stored. With
        `expected_revision` the save is a compare-and-set: it raises StaleStateError unless the
        stored revision is that one (0: the deployment must not exist yet), so a change computed
        from a state read earlier never overwrites a change made meanwhile.
        """
        values = _to_values(state)
        for _attempt in range(5):
            now = datetime.now(UTC)
            try:
                with self.engine.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        # event ids come from a sequence, drawn before commit; one save at a
                        # time keeps them in commit order, so fingerprint() misses no save
                        conn.execute(_SAVE_LOCK)
                    revision = self._write(
                        conn, state.name, {**values, "updated_at": now}, expected_revision
                    )
                    saved = replace(state, revision=revision, updated_at=now)
                    conn.execute(
                        insert(deployment_events).values(
                            deployment=saved.name,
                            action=action,
                            state=saved.to_dict(),
                            created_at=now,
                            actor=actor,
                            reason=reason,
                        )
                    )
            except _CreatedMeanwhile:
                if expected_revision == 0:
                    raise StaleStateError(
                        f"deployment {state.name!r} was created meanwhile; read it and retry"
                    ) from None
                continue  # another writer created the deployment first: update it instead
            return saved
        raise ConflictError(f"could not save deployment {state.name!r}: too many writers")

    @staticmethod
    def _write(conn: Connection, name: str, values: dict[str, Any], expected: int | None) -> int:
        """Update the row and bump its revision, or create it at revision 1; the new revision."""
        if expected != 0:
            query = update(deployments).where(deployments.c.name == name)
            if expected is not None:
                query = query.where(deployments.c.revision == expected)
            revision = conn.execute(
                query.values(revision=deployments.c.revision + 1, **values).returning(
                    deployments.c.revision
                )
            ).scalar()
            if revision is not None:
                return int(revision)
            if expected is not None:
                raise StaleStateError(
                    f"deployment {name!r} changed since revision {expected}; read it and retry"
                )
        try:
            conn.execute(insert(deployments).values(name=name, revision=1, **values))
        except IntegrityError as exc:
            raise _CreatedMeanwhile from exc
        return 1
