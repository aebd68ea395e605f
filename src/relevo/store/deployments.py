"""Deployments and their history in the store."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Engine, RowMapping

from relevo.routing.deployment import Deployment
from relevo.store.tables import deployment_events, deployments


def _to_deployment(row: RowMapping) -> Deployment:
    updated = row["updated_at"]
    if updated.tzinfo is None:
        updated = updated.replace(tzinfo=UTC)
    return Deployment(
        name=row["name"],
        model_name=row["model_name"],
        model_version=row["model_version"],
        strategy=row["strategy"],
        candidate_version=row["candidate_version"],
        weight=row["weight"],
        key_column=row["key_column"],
        revision=row["revision"],
        updated_at=updated,
    )


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
        """(number of deployments, sum of revisions): changes whenever any deployment does."""
        query = select(func.count(), func.coalesce(func.sum(deployments.c.revision), 0))
        with self.engine.connect() as conn:
            count, total = conn.execute(query).one()
        return int(count), int(total)

    def save(self, state: Deployment, action: str) -> Deployment:
        """Create or replace the deployment's state, bumping its revision; records an event."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            current = conn.execute(
                select(deployments.c.revision).where(deployments.c.name == state.name)
            ).scalar()
            new = replace(state, revision=(current or 0) + 1, updated_at=now)
            values = {
                "model_name": new.model_name,
                "model_version": new.model_version,
                "strategy": new.strategy,
                "candidate_version": new.candidate_version,
                "weight": new.weight,
                "key_column": new.key_column,
                "revision": new.revision,
                "updated_at": now,
            }
            if current is None:
                conn.execute(insert(deployments).values(name=new.name, **values))
            else:
                conn.execute(
                    update(deployments).where(deployments.c.name == new.name).values(**values)
                )
            conn.execute(
                insert(deployment_events).values(
                    deployment=new.name, action=action, state=new.to_dict(), created_at=now
                )
            )
        return new
