"""The audit trail of a deployment: one event per change, saying when, what, why and who."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

#: deploy: a new champion (basic) or challenger (shadow, canary); advance: the next rollout
#: step; promote: the challenger became the champion; rollback: the challenger was dropped or
#: the previous champion came back
Action = Literal["deploy", "advance", "promote", "rollback"]

#: who acted when a gate decided on its own
GATE = "gate"


@dataclass(frozen=True)
class DeploymentEvent:
    """One entry of the audit trail, with the state the change produced."""

    deployment: str
    action: str
    created_at: datetime
    actor: str | None = None
    reason: str | None = None
    state: dict[str, Any] = field(default_factory=dict)
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "deployment": self.deployment,
            "action": self.action,
            "created_at": self.created_at.isoformat(),
            "actor": self.actor,
            "reason": self.reason,
            "state": self.state,
        }
