"""The rollout controller: pure transitions of a deployment's state, each with its audit event.

deploy (a basic swap, or a shadow or canary challenger), promote (the next step, or the
challenger becomes the champion), rollback (drop the challenger, or bring back the champion a
promotion replaced) and `decide`, which turns gate results into the next move. Nothing here
reads a clock, a database or a model: the caller passes `now`, the state and the numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any, Literal

from relevo.errors import ConflictError, InvalidInputError
from relevo.routing.deployment import (
    DEFAULT_BAKE_SECONDS,
    DEFAULT_MIN_STEP_ROWS,
    DEFAULT_MIN_STEP_SECONDS,
    DEFAULT_STEPS,
    Deployment,
    Strategy,
    percent,
)
from relevo.routing.events import GATE, DeploymentEvent
from relevo.routing.gates import Gate, GateResult, RolloutStats, check_all

Move = Literal["none", "hold", "advance", "promote", "rollback"]


@dataclass(frozen=True)
class Transition:
    """A new state and the audit event that records why it came about."""

    state: Deployment
    event: DeploymentEvent


@dataclass(frozen=True)
class DeployRequest:
    """A deploy, resolved: the model's name and version, the strategy and its settings."""

    model_name: str
    model_version: int
    strategy: Strategy = "basic"
    weight: float | None = None
    steps: tuple[int, ...] = ()
    manual: bool = False
    mirror: float | None = None
    key_column: str | None = None
    log_extra: tuple[str, ...] = ()
    min_step_rows: int = DEFAULT_MIN_STEP_ROWS
    min_step_seconds: float = DEFAULT_MIN_STEP_SECONDS
    bake_seconds: float = DEFAULT_BAKE_SECONDS

    @property
    def model_ref(self) -> str:
        return f"{self.model_name}:{self.model_version}"


@dataclass(frozen=True)
class Decision:
    """What the gates say to do now, and why."""

    move: Move
    reason: str
    results: tuple[GateResult, ...] = ()
    #: during the bake period after a promotion: when it ends
    bake_until: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "move": self.move,
            "reason": self.reason,
            "gates": [r.to_dict() for r in self.results],
            "bake_until": self.bake_until.isoformat() if self.bake_until is not None else None,
        }


def _event(
    state: Deployment, action: str, now: datetime, actor: str | None, reason: str | None
) -> DeploymentEvent:
    return DeploymentEvent(state.name, action, now, actor, reason, state.to_dict())


def validate_steps(steps: Sequence[int]) -> tuple[int, ...]:
    """Rollout steps in percent: increasing, each in 1..100, ending at 100."""
    out = tuple(steps)
    if not out:
        raise InvalidInputError("steps: give at least one step, e.g. 5,25,50,100")
    for step in out:
        if isinstance(step, bool) or not isinstance(step, int) or not 0 < step <= 100:
            raise InvalidInputError(f"steps: {step!r} is not a whole percentage in 1..100")
    if any(b <= a for a, b in pairwise(out)):
        raise InvalidInputError(f"steps: {list(out)} must increase step by step")
    if out[-1] != 100:
        raise InvalidInputError(f"steps: {list(out)} must end at 100 (the whole traffic)")
    if len(out) == 1:
        # all rows to the challenger at once: the champion answers none to compare it with,
        # so the latency gate could never decide and the rollout would hold for ever
        raise InvalidInputError(
            "steps: [100] sends every row to the challenger at once, leaving the gates no "
            "champion rows to compare it with: start lower (e.g. 5,25,50,100), or swap the "
            "model without a canary (the basic strategy)"
        )
    return out


def deploy(
    current: Deployment | None,
    name: str,
    request: DeployRequest,
    now: datetime,
    actor: str | None = None,
    reason: str | None = None,
) -> Transition:
    """Deploy `request` under `name`: a basic swap, or a challenger beside the champion."""
    if request.strategy == "basic":
        return _swap(current, name, request, now, actor, reason)
    if current is None:
        raise ConflictError(
            f"deployment {name!r} has no champion yet: deploy one with the basic strategy "
            f"before a {request.strategy} challenger"
        )
    if request.model_ref == current.model_ref:
        raise InvalidInputError(
            f"{request.model_ref} is already the champion of {name!r}; a challenger must be "
            "another model or version"
        )
    base = replace(
        current,
        strategy=request.strategy,
        challenger_name=request.model_name,
        challenger_version=request.model_version,
        key_column=request.key_column,
        log_extra=request.log_extra,
        steps=(),
        step=0,
        step_started_at=now,
        manual=False,
        weight=0.0,
        mirror=1.0,
        min_step_rows=request.min_step_rows,
        min_step_seconds=request.min_step_seconds,
        # the challenger's own bake, once it is promoted
        bake_seconds=request.bake_seconds,
        # a new challenger ends the bake of the last promotion (its gates watch the deployment
        # now): kept, that bake would come back when the challenger is withdrawn, lasting the
        # challenger's `bake_seconds`, long after it had ended
        promoted_at=None,
        updated_at=now,
    )
    if request.strategy == "shadow":
        if request.weight is not None or request.steps or request.manual:
            raise InvalidInputError(
                "strategy shadow: the challenger never answers, so weight, steps and manual "
                "do not apply (use mirror to score only a share of rows)"
            )
        mirror = 1.0 if request.mirror is None else request.mirror
        if not 0.0 < mirror <= 1.0:
            raise InvalidInputError(f"mirror: {mirror!r} must be in (0, 1]")
        state = replace(base, mirror=mirror)
    else:
        state = _canary(base, request)
    if current.has_challenger:
        # said in the audit trail: the running challenger's plan ends here (its step, its
        # weight), and the gates count its rows afresh from this deploy
        ended = f"replaced the {running(current)}"
        reason = f"{reason}; {ended}" if reason else ended
    return Transition(state, _event(state, "deploy", now, actor, reason))


def running(state: Deployment) -> str:
    """The challenger a deployment runs, as the audit trail names it: `canary challenger
    churn-gbm:1 at 50% (step 3 of 4)`, `shadow challenger churn-gbm:1 (mirror 20%)`."""
    if state.strategy == "shadow":
        return f"shadow challenger {state.challenger_ref} (mirror {percent(state.mirror)})"
    plan = f" (step {state.step + 1} of {len(state.steps)})" if state.steps else ""
    return f"canary challenger {state.challenger_ref} at {percent(state.weight)}{plan}"


def _canary(base: Deployment, request: DeployRequest) -> Deployment:
    if request.mirror is not None:
        raise InvalidInputError("mirror: only a shadow challenger mirrors rows")
    if request.steps:
        if request.weight is not None:
            raise InvalidInputError(
                "weight: a progressive rollout sets the weight from its steps; give either a "
                "fixed weight or steps"
            )
        steps = validate_steps(request.steps)
        return replace(base, steps=steps, weight=steps[0] / 100, manual=request.manual)
    if request.manual:
        raise InvalidInputError(
            "manual: only a progressive rollout has steps to hold at (add steps or rollout)"
        )
    if request.weight is None:
        raise InvalidInputError(
            "weight: a canary needs a weight (the challenger's share, e.g. 0.05) or a "
            f"progressive rollout (steps, default {','.join(map(str, DEFAULT_STEPS))})"
        )
    if not 0.0 < request.weight < 1.0:
        raise InvalidInputError(f"weight: {request.weight!r} must be in (0, 1)")
    return replace(base, weight=float(request.weight))


def _swap(
    current: Deployment | None,
    name: str,
    request: DeployRequest,
    now: datetime,
    actor: str | None,
    reason: str | None,
) -> Transition:
    if request.weight is not None or request.steps or request.manual or request.mirror is not None:
        raise InvalidInputError(
            "strategy basic swaps the champion at once: weight, steps, manual and mirror "
            "belong to canary and shadow"
        )
    state = Deployment(
        name=name,
        model_name=request.model_name,
        model_version=request.model_version,
        updated_at=now,
        key_column=request.key_column,
        log_extra=request.log_extra,
        min_step_rows=request.min_step_rows,
        min_step_seconds=request.min_step_seconds,
        bake_seconds=request.bake_seconds,
        revision=current.revision if current is not None else 1,
    )
    if current is not None and current.model_ref != request.model_ref:
        # a swap is an immediate promotion: the old champion can come back, and bakes
        state = replace(
            state,
            previous_name=current.model_name,
            previous_version=current.model_version,
            promoted_at=now,
        )
    elif current is not None:  # same champion (a new key, say): keep what it could roll back to
        # and its bake as it was: this deploy's `bake_seconds` would extend it, or bring back
        # one that had ended, and let an alert roll back a champion long past its bake
        state = replace(
            state,
            previous_name=current.previous_name,
            previous_version=current.previous_version,
            promoted_at=current.promoted_at,
            bake_seconds=(
                current.bake_seconds if current.promoted_at is not None else state.bake_seconds
            ),
        )
    if current is not None and current.has_challenger:
        # said in the audit trail: a swap ends the challenger that ran beside the champion
        ref = current.challenger_ref
        if ref == state.model_ref:
            ended = f"the {current.strategy} challenger {ref} became the champion at once"
        else:
            ended = f"withdrew the {current.strategy} challenger {ref}"
        reason = f"{reason}; {ended}" if reason else ended
    return Transition(state, _event(state, "deploy", now, actor, reason))


def promote(
    state: Deployment, now: datetime, actor: str | None = None, reason: str | None = None
) -> Transition:
    """The next rollout step, or (at the last step, or for a fixed canary or a shadow) the
    challenger becomes the champion; the old champion is kept for a rollback."""
    if not state.has_challenger:
        raise ConflictError(f"deployment {state.name!r} has no challenger to promote")
    if state.progressive and not state.last_step:
        step = state.step + 1
        new = replace(
            state,
            step=step,
            weight=state.steps[step] / 100,
            step_started_at=now,
            updated_at=now,
        )
        why = reason or f"step {step + 1} of {len(state.steps)}: {state.steps[step]}%"
        return Transition(new, _event(new, "advance", now, actor, why))
    new = replace(
        state,
        model_name=state.challenger_name or state.model_name,
        model_version=state.challenger_version or state.model_version,
        previous_name=state.model_name,
        previous_version=state.model_version,
        promoted_at=now,
        **_no_challenger(now),
    )
    why = reason or f"{state.challenger_ref} replaces {state.model_ref}"
    return Transition(new, _event(new, "promote", now, actor, why))


def rollback(
    state: Deployment, now: datetime, actor: str | None = None, reason: str | None = None
) -> Transition:
    """Back in one step: drop the challenger, or, without one, bring back the champion the last
    promotion replaced."""
    if state.has_challenger:
        new = replace(state, **_no_challenger(now))
        why = reason or f"{state.challenger_ref} withdrawn"
        return Transition(new, _event(new, "rollback", now, actor, why))
    if state.previous_name is None or state.previous_version is None:
        raise ConflictError(
            f"deployment {state.name!r} has nothing to roll back to: no challenger and no "
            "previous champion"
        )
    new = replace(
        state,
        model_name=state.previous_name,
        model_version=state.previous_version,
        previous_name=None,
        previous_version=None,
        promoted_at=None,
        **_no_challenger(now),
    )
    why = reason or f"{state.previous_ref} back in place of {state.model_ref}"
    return Transition(new, _event(new, "rollback", now, actor, why))


def _no_challenger(now: datetime) -> dict[str, Any]:
    return {
        "strategy": "basic",
        "challenger_name": None,
        "challenger_version": None,
        "weight": 0.0,
        "steps": (),
        "step": 0,
        "step_started_at": None,
        "manual": False,
        "mirror": 1.0,
        "updated_at": now,
    }


def decide(
    state: Deployment, stats: RolloutStats, gates: Sequence[Gate], now: datetime
) -> Decision:
    """The next move given the gates: a failed gate rolls back at once; an inconclusive one
    holds; all passing advances a step (once it has its minimum rows and time) or, at the last
    step, promotes. A fixed canary, a manual rollout and a shadow never advance on their own.
    After a promotion, a firing alert during the bake period rolls back."""
    if not state.has_challenger:
        until = state.bake_until
        if until is None or not state.baking(now):
            return Decision("none", "no challenger")
        if stats.alerts:
            alerts = ", ".join(stats.alerts)
            return Decision("rollback", f"alert during the bake period: {alerts}", bake_until=until)
        why = (
            f"baking until {until.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC: an alert on errors, "
            f"latency, drift or data quality rolls back to {state.previous_ref}"
        )
        return Decision("none", why, bake_until=until)
    results = tuple(check_all(gates, state, stats))
    if state.strategy == "shadow":
        # a shadow answers nobody: its gates are reported, never acted on
        return Decision("hold", "shadow: compared, never promoted automatically", results)
    failed = [r for r in results if r.verdict == "fail"]
    if failed:
        why = "; ".join(f"gate {r.gate} failed: {r.detail}" for r in failed)
        return Decision("rollback", why, results)
    waiting = [r for r in results if r.verdict == "inconclusive"]
    if waiting:
        why = "; ".join(f"gate {r.gate} inconclusive: {r.detail}" for r in waiting)
        return Decision("hold", why, results)
    if not state.progressive:
        return Decision("hold", "fixed weight: gates pass, waiting for promote", results)
    if state.manual:
        return Decision("hold", "manual rollout: gates pass, waiting for promote", results)
    if stats.step_rows < state.min_step_rows:
        why = f"step needs {state.min_step_rows} rows, has {stats.step_rows}"
        return Decision("hold", why, results)
    started = state.step_started_at or state.updated_at
    held = (now - started).total_seconds()
    if held < state.min_step_seconds:
        why = f"step needs {state.min_step_seconds:g} s, has {held:.0f} s"
        return Decision("hold", why, results)
    passed = f"gates pass at {state.steps[state.step]}%"
    return Decision("promote" if state.last_step else "advance", passed, results)


def apply(state: Deployment, decision: Decision, now: datetime) -> Transition | None:
    """The transition a decision calls for, by the gate; None when it holds."""
    if decision.move == "rollback":
        return rollback(state, now, actor=GATE, reason=decision.reason)
    if decision.move in ("advance", "promote"):
        return promote(state, now, actor=GATE, reason=decision.reason)
    return None
