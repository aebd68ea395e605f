"""The values of alerting: an alert's state, a rule's recent observations, a silence, and a
notification."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

State = Literal["firing", "resolved"]
Kind = Literal["firing", "escalated", "resolved"]

#: a key of alerting: (deployment or None for the whole server, rule, subject)
Key = tuple[str | None, str, str]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class Alert:
    """One incident of a rule on a deployment and subject: firing, then resolved."""

    deployment: str | None
    rule: str
    subject: str
    state: State
    severity: str
    message: str
    incident: str
    started_at: datetime
    updated_at: datetime
    value: float | None = None
    threshold: float | None = None
    resolved_at: datetime | None = None
    notified: bool = False
    id: int | None = None
    #: set when read for display: a silence matches it now
    silenced: bool = False

    @property
    def key(self) -> Key:
        return (self.deployment, self.rule, self.subject)

    @property
    def firing(self) -> bool:
        return self.state == "firing"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "deployment": self.deployment,
            "rule": self.rule,
            "subject": self.subject,
            "state": self.state,
            "severity": self.severity,
            "message": self.message,
            "value": self.value,
            "threshold": self.threshold,
            "incident": self.incident,
            "started_at": _iso(self.started_at),
            "updated_at": _iso(self.updated_at),
            "resolved_at": _iso(self.resolved_at),
            "notified": self.notified,
            "silenced": self.silenced,
        }


@dataclass(frozen=True)
class Track:
    """The recent observations of one key: `recent` holds the last evaluations, newest last,
    "1" where the signal broke its rule; the rest is the latest observation."""

    deployment: str | None
    rule: str
    subject: str
    recent: str
    firing: bool
    severity: str
    message: str
    evaluated_at: datetime
    value: float | None = None
    threshold: float | None = None

    @property
    def key(self) -> Key:
        return (self.deployment, self.rule, self.subject)


@dataclass(frozen=True)
class Silence:
    """Alerts matching it are kept, shown as silenced, and not notified until `until`. A field
    left None matches anything."""

    until: datetime
    deployment: str | None = None
    rule: str | None = None
    subject: str | None = None
    reason: str | None = None
    created_at: datetime | None = None
    id: int | None = None

    def matches(self, alert: Alert, now: datetime) -> bool:
        return (
            now < self.until
            and (self.deployment is None or self.deployment == alert.deployment)
            and (self.rule is None or self.rule == alert.rule)
            and (self.subject is None or self.subject == alert.subject)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "deployment": self.deployment,
            "rule": self.rule,
            "subject": self.subject,
            "until": self.until.isoformat(),
            "reason": self.reason,
            "created_at": _iso(self.created_at),
        }


@dataclass(frozen=True)
class Notification:
    """What the notifiers send: an incident opened (`firing`), got a critical alert
    (`escalated`), or cleared (`resolved`), with the alerts concerned."""

    kind: Kind
    deployment: str | None
    incident: str
    alerts: tuple[Alert, ...]
    at: datetime

    @property
    def severity(self) -> str:
        return "critical" if any(a.severity == "critical" for a in self.alerts) else "warning"

    def text(self) -> str:
        """One human paragraph: the headline, then one line per alert."""
        where = self.deployment or "server"
        head = {
            "firing": "FIRING",
            "escalated": "ESCALATED",
            "resolved": "RESOLVED",
        }[self.kind]
        lines = [f"[relevo] {head} {where} (incident {self.incident}, {self.severity})"]
        for a in self.alerts:
            subject = f"[{a.subject}]" if a.subject else ""
            lines.append(f"- {a.rule}{subject}: {a.message}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "deployment": self.deployment,
            "incident": self.incident,
            "severity": self.severity,
            "at": self.at.isoformat(),
            "text": self.text(),
            "alerts": [a.to_dict() for a in self.alerts],
        }
