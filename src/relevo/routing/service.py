"""Deploying model versions under a name and reading deployment state."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum

from relevo.errors import InvalidInputError, NotFoundError
from relevo.registry.registry import Registry
from relevo.registry.types import ModelRef
from relevo.routing.deployment import Deployment
from relevo.store import Store


class KeepType(Enum):
    """The 'leave it as it is' default of an optional setting."""

    KEEP = "keep"


KEEP = KeepType.KEEP


class DeploymentService:
    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry

    def deploy(
        self, name: str, model: str | ModelRef, *, key: str | KeepType | None = KEEP
    ) -> Deployment:
        """Make `model` (NAME:VERSION) the live version of deployment `name` (basic swap).

        `key` names the routing-key column; by default a redeploy keeps the current key, and
        `key=None` removes it.
        """
        if not name or "/" in name:
            raise InvalidInputError(f"invalid deployment name {name!r}")
        version = self.registry.get(model)
        if isinstance(key, KeepType):
            current = self.store.deployments.get(name)
            key = current.key_column if current is not None else None
        if key is not None and key in version.signature:
            raise InvalidInputError(
                f"routing key {key!r} is a feature of {version.ref}; the key must be a column "
                "that identifies the row (e.g. customer_id), not a model input"
            )
        state = Deployment(
            name=name,
            model_name=version.name,
            model_version=version.version,
            updated_at=datetime.now(UTC),
            key_column=key,
        )
        return self.store.deployments.save(state, action="deploy")

    def get(self, name: str) -> Deployment:
        found = self.store.deployments.get(name)
        if found is None:
            known = [d.name for d in self.store.deployments.list()]
            hint = f"; deployments: {', '.join(known)}" if known else "; nothing is deployed yet"
            raise NotFoundError(f"deployment {name!r} not found{hint}")
        return found

    def list(self) -> list[Deployment]:
        return self.store.deployments.list()
