"""`AlertService`: evaluates every deployment's rules (providers → engine → store →
notifiers), lists alerts, and keeps silences. Transport-free: the server's evaluator loop, the
HTTP routes and the CLI call it."""

from __future__ import annotations

import builtins
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from relevo.context import Relevo
from relevo.errors import ConflictError, InvalidInputError, Problem
from relevo.monitoring.alerts import config, engine
from relevo.monitoring.alerts import providers as registered
from relevo.monitoring.alerts.notifiers import Dispatcher, Target
from relevo.monitoring.alerts.providers import Provider
from relevo.monitoring.alerts.rules import Rule, rules_for
from relevo.monitoring.alerts.state import Alert, Notification, Silence
from relevo.monitoring.signals import Signal

log = logging.getLogger("relevo.alerts")

#: held for the time of each evaluation, scheduled or on demand: one at a time over the store
EVALUATION_LEASE = "monitoring-evaluation"
#: how long an evaluation waits for another to end, and how long a crashed one blocks others
EVALUATION_WAIT_S = 60.0
EVALUATION_TTL_S = 120.0
#: the lease that makes one replica at a time evaluate the alert rules
EVALUATOR_LEASE = "monitoring-evaluator"


@dataclass(frozen=True)
class EvaluationReport:
    """What one evaluation saw and did."""

    at: datetime
    deployments: int
    signals: int
    changed: tuple[Alert, ...]
    notifications: tuple[Notification, ...]
    #: provider failures, "deployment: provider: error" (a failing provider skips only itself)
    errors: tuple[str, ...] = field(default=())

    @property
    def started(self) -> tuple[Alert, ...]:
        """The alerts this evaluation started."""
        return tuple(a for a in self.changed if a.firing and a.started_at == self.at)

    @property
    def resolved(self) -> tuple[Alert, ...]:
        """The alerts this evaluation resolved."""
        return tuple(a for a in self.changed if not a.firing)

    @property
    def still_firing(self) -> tuple[Alert, ...]:
        """The alerts that were firing and still are (their value and message brought up to
        date)."""
        return tuple(a for a in self.changed if a.firing and a.started_at != self.at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "deployments": self.deployments,
            "signals": self.signals,
            "started": len(self.started),
            "resolved": len(self.resolved),
            "still_firing": len(self.still_firing),
            "changed": [a.to_dict() for a in self.changed],
            "notifications": [n.to_dict() for n in self.notifications],
            "errors": list(self.errors),
        }


#: the longest silence: a longer one is a rule to turn off (`relevo monitor ... enabled=false`)
MAX_SILENCE = timedelta(days=365)
#: the longest text each field of a silence may hold: the store's columns (the reason is free
#: text, bounded by what a request carries)
_SILENCE_TEXT: dict[str, int | None] = {"rule": 100, "subject": 200, "reason": None}


def _text_problems(**texts: str | None) -> list[Problem]:
    """What is wrong with a silence's texts: longer than the store keeps, or holding a NUL
    (which PostgreSQL cannot store)."""
    problems = []
    for key, text in texts.items():
        longest = _SILENCE_TEXT[key]
        if text is None:
            continue
        if "\x00" in text:
            problems.append(Problem("no NUL characters", column=key))
        elif longest is not None and len(text) > longest:
            problems.append(Problem(f"at most {longest} characters", column=key))
    return problems


def new_incident() -> str:
    return uuid.uuid4().hex[:12]


class AlertService:
    def __init__(
        self,
        rv: Relevo,
        *,
        dispatcher: Dispatcher | None = None,
        providers: Sequence[Provider] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.rv = rv
        s = rv.settings
        self.dispatcher = dispatcher or Dispatcher(
            timeout_s=s.alert_timeout_s, retries=s.alert_retries
        )
        #: None: the module's PROVIDERS as they are when evaluating (the lead extends them)
        self.providers = providers
        self._clock = clock or (lambda: datetime.now(UTC))

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, now: datetime | None = None) -> EvaluationReport:
        """Ask every provider about every deployment, run the engine, store the states and
        send the notifications. One evaluation at a time over the store (the lease
        `monitoring-evaluation`, waited for): two at once, an on-demand one beside the
        server's, read the same states and started the same alert twice, sent twice."""
        holder = f"evaluation-{uuid.uuid4().hex}"
        leases = self.rv.store.leases
        deadline = time.monotonic() + EVALUATION_WAIT_S
        while not leases.acquire(EVALUATION_LEASE, holder, EVALUATION_TTL_S, now=self._clock()):
            if time.monotonic() > deadline:
                raise ConflictError(
                    f"another alert evaluation has run for over {EVALUATION_WAIT_S:g} s; "
                    "try again when it ends"
                )
            time.sleep(0.05)
        try:
            return self._evaluate(now)
        finally:
            leases.release(EVALUATION_LEASE, holder)

    def _evaluate(self, now: datetime | None) -> EvaluationReport:
        now = now or self._clock()
        repo = self.rv.store.alerts
        names = [d.name for d in self.rv.deployments.list()]
        settings = repo.all_monitoring()
        signals: builtins.list[Signal] = []
        errors: builtins.list[str] = []
        measured: set[tuple[str | None, str]] = set()
        for name in names:
            for provider in self.providers if self.providers is not None else registered.PROVIDERS:
                try:
                    signals.extend(provider(self.rv, name, now))
                except Exception as exc:  # one broken provider must not silence the others
                    what = getattr(provider, "__qualname__", repr(provider))
                    errors.append(f"{name}: {what}: {exc}")
                    log.warning("alert provider %s failed on %r: %s", what, name, exc)
                    continue
                measured.update((name, rule) for rule in registered.OWNS.get(provider, ()))
        rules: dict[str | None, dict[str, Rule]] = {}

        def rules_of(deployment: str | None) -> dict[str, Rule]:
            if deployment not in rules:
                section = settings.get(deployment or "", {}).get("alerts")
                try:
                    rules[deployment] = rules_for(config.validate_alerts(section))
                except InvalidInputError:
                    rules[deployment] = rules_for(None)
            return rules[deployment]

        outcome = engine.step(
            signals,
            repo.tracks(),
            repo.open_alerts(),
            rules_of,
            repo.silences(active_at=now),
            now,
            new_incident,
            live=names,
            measured=measured,
        )
        saved = repo.save(outcome.tracks, outcome.alerts)
        repo.forget_tracks(names)
        for note in outcome.notifications:
            self.dispatcher.send(note, self.targets(settings.get(note.deployment or "", {})))
        return EvaluationReport(
            now, len(names), len(signals), tuple(saved), outcome.notifications, tuple(errors)
        )

    def targets(self, monitoring: dict[str, Any]) -> builtins.list[Target]:
        """The webhooks of a deployment: the server's and its own, each address once."""
        section = monitoring.get("alerts") or {}
        s = self.rv.settings
        found = [
            Target(url, fmt)
            for url, fmt in (
                (s.alert_webhook_url, "json"),
                (s.alert_slack_url, "slack"),
                (section.get("webhook_url"), "json"),
                (section.get("slack_url"), "slack"),
            )
            if isinstance(url, str) and url
        ]
        return list({t.url: t for t in found}.values())

    # ------------------------------------------------------------------ reading

    def list(
        self, deployment: str | None = None, *, all_states: bool = False
    ) -> builtins.list[Alert]:
        """Firing alerts (or, `all_states`, every incident kept), newest first, marked
        `silenced` where a silence matches them now."""
        if deployment is not None:
            self.rv.deployments.get(deployment)
        now = self._clock()
        silences = self.rv.store.alerts.silences(active_at=now)
        found = self.rv.store.alerts.list(deployment, firing_only=not all_states)
        return [replace(a, silenced=engine.silenced(a, silences, now)) for a in found]

    def rules(self, deployment: str | None = None) -> builtins.list[Rule]:
        """The rules with their settings: the defaults, or a deployment's."""
        if deployment is None:
            return list(rules_for(None).values())
        config.get(self.rv, deployment)  # NotFoundError for an unknown deployment
        return list(config.rules_of_deployment(self.rv, deployment).values())

    # ------------------------------------------------------------------ silences

    def silence(
        self,
        *,
        deployment: str | None = None,
        rule: str | None = None,
        subject: str | None = None,
        until: datetime | None = None,
        duration_s: float | None = None,
        reason: str | None = None,
    ) -> Silence:
        """Keep matching alerts quiet until `until` (or for `duration_s`): they are still
        evaluated, stored and listed, but not notified."""
        now = self._clock()
        if (until is None) == (duration_s is None):
            raise InvalidInputError(
                "invalid silence", [Problem("give either until or a duration", option="until")]
            )
        if duration_s is not None:
            if not 0 < duration_s <= MAX_SILENCE.total_seconds():
                raise InvalidInputError(
                    "invalid silence",
                    [Problem("the duration must be positive, a year at most", option="duration")],
                )
            until = now + timedelta(seconds=duration_s)
        assert until is not None
        if until.tzinfo is None:
            raise InvalidInputError(
                "invalid silence", [Problem("until needs a time zone, e.g. ...Z", option="until")]
            )
        if not now < until <= now + MAX_SILENCE:
            raise InvalidInputError(
                "invalid silence",
                [Problem("until must be in the future, a year ahead at most", option="until")],
            )
        problems = _text_problems(rule=rule, subject=subject, reason=reason)
        if problems:
            raise InvalidInputError("invalid silence", problems)
        if deployment is None and rule is None and subject is None:
            raise InvalidInputError(
                "invalid silence",
                [Problem("name a deployment, a rule or a subject to match", column="deployment")],
            )
        if deployment is not None:
            self.rv.deployments.get(deployment)
        return self.rv.store.alerts.add_silence(
            Silence(until, deployment, rule, subject, reason, created_at=now)
        )

    def silences(self) -> builtins.list[Silence]:
        """The silences in force now."""
        return self.rv.store.alerts.silences(active_at=self._clock())

    # ------------------------------------------------------------------ lease

    def acquire_evaluator(self, holder: str, ttl_s: float) -> bool:
        return self.rv.store.leases.acquire(EVALUATOR_LEASE, holder, ttl_s, now=self._clock())

    def release_evaluator(self, holder: str) -> bool:
        return self.rv.store.leases.release(EVALUATOR_LEASE, holder)
