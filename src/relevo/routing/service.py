"""Deployments as users drive them: deploy, promote, roll back, evaluate gates, read history.

Every change is computed by the pure controller (`rollout.py`) from the stored state and saved
with its audit event in one transaction, as a compare-and-set on the revision: two replicas
(or a user and the gate evaluator) acting at once never overwrite each other's change.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from relevo.errors import InvalidInputError, NotFoundError
from relevo.names import validate_name
from relevo.registry.registry import Registry
from relevo.registry.types import ModelRef, ModelVersion
from relevo.routing import rollout as controller
from relevo.routing.deployment import (
    DEFAULT_STEPS,
    KEEP,
    STRATEGIES,
    Deployment,
    KeepType,
    Strategy,
)
from relevo.routing.events import DeploymentEvent
from relevo.routing.gates import Gate, RolloutStats, default_gates
from relevo.routing.rollout import Decision, DeployRequest, Transition
from relevo.settings import Settings, get_settings
from relevo.store import Store
from relevo.store.deployments import StaleStateError

#: the lease that makes one replica at a time evaluate rollouts
EVALUATOR_LEASE = "rollout-evaluator"

_ATTEMPTS = 5

T = TypeVar("T")
N = TypeVar("N", int, float)


@dataclass(frozen=True)
class Evaluation:
    """What an evaluation decided and the state after it (changed when it moved)."""

    decision: Decision
    state: Deployment
    changed: bool


class DeploymentService:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        *,
        settings: Settings | None = None,
        gates: Sequence[Gate] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.settings = settings or get_settings()
        #: the gates every canary is checked against (monitoring appends drift and labels)
        self.gates: list[Gate] = list(gates) if gates is not None else default_gates()
        self._clock = clock or (lambda: datetime.now(UTC))

    # ------------------------------------------------------------------ changes

    def deploy(
        self,
        name: str,
        model: str | ModelRef,
        *,
        strategy: Strategy | None = None,
        weight: float | None = None,
        key: str | KeepType | None = KEEP,
        steps: Sequence[int] | str | None = None,
        rollout: bool = False,
        manual: bool = False,
        mirror: float | None = None,
        log_extra: Sequence[str] | KeepType = KEEP,
        min_step_rows: int | None = None,
        min_step_seconds: float | None = None,
        bake_seconds: float | None = None,
        actor: str | None = None,
        reason: str | None = None,
    ) -> Deployment:
        """Deploy `model` (NAME:VERSION) under `name`.

        Without a strategy this is a basic swap (the champion changes at once), unless
        `weight`, `steps` or `rollout` ask for a canary or `mirror` for a shadow. A shadow or
        canary `model` is a challenger beside the current champion; any registered model is
        fine. `key` names the routing-key column (by default a redeploy keeps it, `None`
        removes it); `log_extra` the request fields the prediction log may keep beyond the
        signature and the key (kept by default).
        """
        validate_name(name)
        _check_reason(reason)
        chosen = _strategy(strategy, weight, steps, rollout, mirror)
        plan: tuple[int, ...] = ()
        if steps is not None:
            plan = rollout_steps(steps)
        elif rollout:
            plan = DEFAULT_STEPS
        version = self.registry.get(model)
        if not self.registry.artifacts.exists(version.artifact_path):
            # every server would fail to load it (and keep what it serves): said here
            raise NotFoundError(
                f"the artifact of {version.ref} is missing from {self.registry.artifacts.location}"
                f" ({version.artifact_path}): register it into this store again, or point "
                "RELEVO_ARTIFACTS_URL where it is"
            )
        s = self.settings

        def compute(current: Deployment | None) -> Transition:
            key_column = _keep(key, current.key_column if current else None)
            models = [version]
            if chosen != "basic" and current is not None:
                models.append(self.registry.get(current.model_ref))
            _check_key(key_column, models)
            request = DeployRequest(
                model_name=version.name,
                model_version=version.version,
                strategy=chosen,
                weight=weight,
                steps=plan,
                manual=manual,
                mirror=mirror,
                key_column=key_column,
                log_extra=_log_extra(_keep(log_extra, current.log_extra if current else ())),
                min_step_rows=_rows(
                    _count(min_step_rows, "min_step_rows"), s.rollout_min_step_rows
                ),
                min_step_seconds=_default(
                    min_step_seconds, s.rollout_min_step_seconds, "min_step_seconds"
                ),
                bake_seconds=_default(bake_seconds, s.rollout_bake_seconds, "bake_seconds"),
            )
            return controller.deploy(current, name, request, self._clock(), actor, reason)

        return self._change(name, compute)

    def promote(
        self,
        name: str,
        *,
        actor: str | None = None,
        reason: str | None = None,
        revision: int | None = None,
    ) -> Deployment:
        """The next rollout step, or the challenger becomes the champion. With `revision`, only
        from that revision (the one the caller saw): refused when the deployment is at another,
        so that two callers promoting what they both saw make one step, not two."""
        _check_reason(reason)
        return self._change(
            name,
            lambda s: controller.promote(_some(s), self._clock(), actor, reason),
            "promote",
            revision,
        )

    def rollback(
        self,
        name: str,
        *,
        actor: str | None = None,
        reason: str | None = None,
        revision: int | None = None,
    ) -> Deployment:
        """Drop the challenger, or bring back the champion the last promotion replaced (with
        `revision`: only from that revision, as `promote`)."""
        _check_reason(reason)
        return self._change(
            name,
            lambda s: controller.rollback(_some(s), self._clock(), actor, reason),
            "rollback",
            revision,
        )

    def decide(self, name: str, stats: RolloutStats, state: Deployment | None = None) -> Decision:
        """What the gates say about deployment `name` now, without acting on it (`stats`
        describe `state`, the deployment as stored now when not given)."""
        return controller.decide(state or self.get(name), stats, self.gates, self._clock())

    def evaluate(
        self, name: str, stats: RolloutStats, state: Deployment | None = None
    ) -> Evaluation:
        """Check the gates and act: advance a step, promote, roll back, or hold.

        `stats` describe `state` (the deployment as stored now when not given); if the stored
        deployment is not that state, or changes before the move is saved, nothing is saved
        and the decision says so (the next look decides on fresh numbers).
        """
        if state is None:
            state = self.get(name)
        now = self._clock()
        decision = controller.decide(state, stats, self.gates, now)
        transition = controller.apply(state, decision, now)
        if transition is None:
            return Evaluation(decision, state, changed=False)
        try:
            saved = self._save(transition, expected=state.revision)
        except StaleStateError:
            held = Decision("hold", "the deployment changed meanwhile", decision.results)
            return Evaluation(held, self.get(name), changed=False)
        return Evaluation(decision, saved, changed=True)

    # ------------------------------------------------------------------ reading

    def get(self, name: str) -> Deployment:
        found = self.store.deployments.get(name)
        if found is None:
            known = [d.name for d in self.store.deployments.list()]
            hint = f"; deployments: {', '.join(known)}" if known else "; nothing is deployed yet"
            raise NotFoundError(f"deployment {name!r} not found{hint}")
        return found

    def list(self) -> list[Deployment]:
        return self.store.deployments.list()

    def history(self, name: str) -> builtins.list[DeploymentEvent]:
        """The audit trail of `name`, oldest first: every change, when, why and by whom."""
        events = self.store.deployments.history(name)
        if not events:
            self.get(name)  # a clear NotFoundError for a name never deployed
        return events

    # ------------------------------------------------------------------ evaluator lease

    def acquire_evaluator(self, holder: str, ttl_s: float) -> bool:
        """Become (or stay) the one replica that evaluates rollouts, for `ttl_s` seconds."""
        return self.store.leases.acquire(EVALUATOR_LEASE, holder, ttl_s, now=self._clock())

    def release_evaluator(self, holder: str) -> bool:
        return self.store.leases.release(EVALUATOR_LEASE, holder)

    # ------------------------------------------------------------------ internals

    def _change(
        self,
        name: str,
        compute: Callable[[Deployment | None], Transition],
        relative: str | None = None,
        seen: int | None = None,
    ) -> Deployment:
        """Save what `compute` makes of the stored state (compare-and-set). A deploy states
        what to serve, so it is computed again from the fresh state when someone changed it
        meanwhile. A `relative` change (promote, rollback) means a move from the state it was
        asked against (the revision `seen`, when the caller gives it; else the one read here):
        made again from another state it could roll back a champion the gates just restored,
        or skip a step they or another user just took, so it is refused instead."""
        for _attempt in range(_ATTEMPTS):
            current = self.get(name) if relative else self.store.deployments.get(name)
            if relative and seen is not None and current is not None and current.revision != seen:
                # the caller's revision is not the current one: say where it stands, and
                # what changed it last (a revision it never had is a typo, not a change)
                last = "" if seen > current.revision else f" (last: {self._last(name)})"
                raise StaleStateError(
                    f"deployment {name!r} is at revision {current.revision}, not {seen}{last}; "
                    f"nothing was done: check its state (`relevo status {name}`) and "
                    f"{relative} again if still wanted"
                )
            transition = compute(current)
            try:
                return self._save(transition, expected=current.revision if current else 0)
            except StaleStateError:
                if relative is None:
                    continue
                assert current is not None
                raise StaleStateError(self._changed(name, current.revision, relative)) from None
        raise StaleStateError(f"deployment {name!r} kept changing; try again")

    def _changed(self, name: str, seen: int, action: str) -> str:
        last = self.store.deployments.history(name)[-1]  # what changed it (it was deployed)
        return (
            f"deployment {name!r} changed while the {action} was being made (revision "
            f"{seen} -> {last.state.get('revision', '?')}: {_said(last)}); nothing was "
            f"done: check its state (`relevo status {name}`) and {action} again if still wanted"
        )

    def _last(self, name: str) -> str:
        """The last change of `name`: what, by whom, why."""
        return _said(self.store.deployments.history(name)[-1])

    def _save(self, transition: Transition, expected: int) -> Deployment:
        event = transition.event
        return self.store.deployments.save(
            transition.state,
            event.action,
            actor=event.actor,
            reason=event.reason,
            expected_revision=expected,
        )


def _said(event: DeploymentEvent) -> str:
    why = f" ({event.reason})" if event.reason else ""
    return f"{event.action} by {event.actor or 'unknown'}{why}"


def rollout_steps(steps: Sequence[int] | str) -> tuple[int, ...]:
    """Steps from a list of percentages or their text (`"5,25,50,100"`), validated."""
    if isinstance(steps, str):
        parts = [p.strip() for p in steps.split(",") if p.strip()]
        try:
            steps = [int(p) for p in parts]
        except ValueError:
            raise InvalidInputError(
                f"steps: {steps!r} is not a list of whole percentages like 5,25,50,100"
            ) from None
    return controller.validate_steps(steps)


def _strategy(
    strategy: str | None,
    weight: float | None,
    steps: object,
    rollout_: bool,
    mirror: float | None,
) -> Strategy:
    if strategy is None:
        if weight is not None or steps is not None or rollout_:
            return "canary"
        return "shadow" if mirror is not None else "basic"
    if strategy not in STRATEGIES:
        raise InvalidInputError(f"strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if strategy != "canary" and (steps is not None or rollout_):
        raise InvalidInputError(f"steps: a progressive rollout is a canary, not {strategy}")
    return strategy


def _keep(value: T | KeepType, current: T) -> T:
    return current if isinstance(value, KeepType) else value


def _some(state: Deployment | None) -> Deployment:
    assert state is not None  # _change reads with must_exist
    return state


def _default(value: N | None, default: N, field: str) -> N:
    if value is None:
        return default
    if isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise InvalidInputError(f"{field}: {value!r} must be a number of at least 0")
    return value


def _count(value: int | float | None, field: str) -> int | None:
    """A count given as a number: 50 or 50.0 (JSON and computed values write whole numbers
    so) is 50; 50.5 is refused rather than stored as a fraction of a row."""
    if not isinstance(value, float):
        return value  # an int, or None (`_default` checks the rest)
    if not value.is_integer():
        raise InvalidInputError(f"{field}: {value!r} must be a whole number of at least 0")
    return int(value)


#: the most rows a rollout step may ask for (the store keeps it in a 32-bit integer column)
MAX_STEP_ROWS = 2**31 - 1


def _rows(value: int | None, default: int) -> int:
    rows = _default(value, default, "min_step_rows")
    if rows > MAX_STEP_ROWS:
        raise InvalidInputError(f"min_step_rows: {rows!r} is more than {MAX_STEP_ROWS:,} rows")
    return rows


def _check_reason(reason: str | None) -> None:
    if reason is not None and "\x00" in reason:  # PostgreSQL cannot store it
        raise InvalidInputError("reason: a text without NUL characters")


def _check_key(key: str | None, models: Sequence[ModelVersion]) -> None:
    if key is not None and (
        not isinstance(key, str) or not key.strip() or len(key) > 200 or "\x00" in key
    ):
        raise InvalidInputError(
            f"key: {key!r} is not a column name (give the column that identifies the row, e.g. "
            "customer_id, or none for no key)"
        )
    for version in models:
        if key is not None and key in version.signature:
            raise InvalidInputError(
                f"routing key {key!r} is a feature of {version.ref}; the key must be a column "
                "that identifies the row (e.g. customer_id), not a model input"
            )


def _log_extra(fields: Sequence[str]) -> tuple[str, ...]:
    if isinstance(fields, str):
        raise InvalidInputError("log_extra: give a list of field names, not one string")
    out: list[str] = []
    for field in fields:
        if not isinstance(field, str) or not field or len(field) > 200:
            raise InvalidInputError(f"log_extra: {field!r} is not a field name")
        if field not in out:
            out.append(field)
    return tuple(out)
