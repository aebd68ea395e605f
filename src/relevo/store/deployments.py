"""Deployments and their history in the store."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import IntegrityError

from relevo.errors import ConflictError
from relevo.routing.deployment import Deployment
from relevo.store.tables import deployment_events, deployments

#: PostgreSQL: one deployment save at a time (relevo's advisory locks: 7461626 migrations,
#: (7461627, 0) deployment saves, (7461628, hash of the name) model versions)
_SAVE_LOCK = text("SELECT pg_advisory_xact_lock(7461627, 0)")


class _CreatedMeanwhile(Exception):
    """A concurrent save created the deployment between our UPDATE and INSERT."""


def _to_deployment(row: RowMapping) -> Deployment:
    # the table's columns are the value's fields, one for one
    return Deployment(**row)


class DeploymentRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, name: str) -> Deployment | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(deployments).where(deployments.c.name == name)).mappings()
            first = row.first()
        return _to_deployment(first) if first is not None else None

    def list(self) -> list[Deployment]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(deployments).order_by(deployments.c.name)).mappings()
            return [_to_deployment(r) for r in rows]

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

    def save(self, state: Deployment, action: str) -> Deployment:
        """Create or replace the deployment's state, bumping its revision; records an event.

        The bump happens in the database (`revision = revision + 1`), so concurrent saves each
        get a revision of their own and the returned state carries the one stored.
        """
        values: dict[str, Any] = {
            "model_name": state.model_name,
            "model_version": state.model_version,
            "strategy": state.strategy,
            "candidate_version": state.candidate_version,
            "weight": state.weight,
            "key_column": state.key_column,
        }
        for _attempt in range(5):
            now = datetime.now(UTC)
            try:
                with self.engine.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        # event ids come from a sequence, drawn before commit; one save at a
                        # time keeps them in commit order, so fingerprint() misses no save
                        conn.execute(_SAVE_LOCK)
                    revision = self._write(conn, state.name, {**values, "updated_at": now})
                    saved = replace(state, revision=revision, updated_at=now)
                    conn.execute(
                        insert(deployment_events).values(
                            deployment=saved.name,
                            action=action,
                            state=saved.to_dict(),
                            created_at=now,
                        )
                    )
            except _CreatedMeanwhile:
                continue  # another writer created the deployment first: update it instead
            return saved
        raise ConflictError(f"could not save deployment {state.name!r}: too many writers")

    @staticmethod
    def _write(conn: Connection, name: str, values: dict[str, Any]) -> int:
        """Update the row and bump its revision, or create it at revision 1; the new revision."""
        revision = conn.execute(
            update(deployments)
            .where(deployments.c.name == name)
            .values(revision=deployments.c.revision + 1, **values)
            .returning(deployments.c.revision)
        ).scalar()
        if revision is not None:
            return int(revision)
        try:
            conn.execute(insert(deployments).values(name=name, revision=1, **values))
        except IntegrityError as exc:
            raise _CreatedMeanwhile from exc
        return 1
