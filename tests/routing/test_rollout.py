"""The rollout controller, pure: deploy, promote, rollback and gate decisions, each with the
audit event that says what happened, why and by whom."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from relevo.errors import ConflictError, InvalidInputError
from relevo.routing import rollout
from relevo.routing.deployment import Deployment
from relevo.routing.gates import ArmStats, ErrorRateGate, RolloutStats
from relevo.routing.rollout import DeployRequest

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
CHAMPION = Deployment("churn", "churn", 3, T0, key_column="customer_id")
GATES = [ErrorRateGate(min_rows=100)]


def canary(**options: object) -> DeployRequest:
    return DeployRequest("churn-gbm", 1, strategy="canary", key_column="customer_id", **options)


def good(step_rows: int = 1000) -> RolloutStats:
    return RolloutStats(ArmStats(50_000, 500), ArmStats(2000, 20), step_rows=step_rows)


def bad() -> RolloutStats:
    return RolloutStats(ArmStats(50_000, 500), ArmStats(40, 20), step_rows=40)


def test_a_basic_swap_replaces_the_champion_and_remembers_the_old_one():
    first = rollout.deploy(None, "churn", DeployRequest("churn", 3), T0, actor="ana")
    assert first.state.model_ref == "churn:3" and first.state.previous_ref is None
    assert (first.event.action, first.event.actor) == ("deploy", "ana")

    swapped = rollout.deploy(first.state, "churn", DeployRequest("churn-gbm", 1), T0).state
    assert swapped.model_ref == "churn-gbm:1"
    assert swapped.previous_ref == "churn:3" and swapped.promoted_at == T0
    back = rollout.rollback(swapped, T0 + timedelta(minutes=5), actor="ana", reason="worse AUC")
    assert back.state.model_ref == "churn:3" and back.state.previous_ref is None
    assert (back.event.action, back.event.reason) == ("rollback", "worse AUC")


def test_a_canary_of_another_model_with_a_fixed_weight():
    t = rollout.deploy(CHAMPION, "churn", canary(weight=0.05), T0, actor="ana", reason="new gbm")
    state = t.state
    assert (state.strategy, state.challenger_ref, state.weight) == ("canary", "churn-gbm:1", 0.05)
    assert state.model_ref == "churn:3" and not state.progressive
    assert t.event.state["challenger"] == "churn-gbm:1" and t.event.reason == "new gbm"
    # a fixed canary never moves on its own, even with passing gates
    assert rollout.decide(state, good(), GATES, T0 + timedelta(days=1)).move == "hold"


def test_a_progressive_rollout_walks_its_steps_and_then_promotes():
    state = rollout.deploy(
        CHAMPION,
        "churn",
        canary(steps=(5, 25, 50, 100), min_step_rows=500, min_step_seconds=60),
        T0,
    ).state
    assert state.weight == 0.05 and state.step == 0
    now, weights, moves = T0, [], []
    while state.has_challenger:
        now += timedelta(seconds=61)
        decision = rollout.decide(state, good(), GATES, now)
        moves.append(decision.move)
        transition = rollout.apply(state, decision, now)
        assert transition is not None and transition.event.actor == "gate"
        state = transition.state
        weights.append(state.weight)
    assert moves == ["advance", "advance", "advance", "promote"]
    assert weights == [0.25, 0.5, 1.0, 0.0]
    assert state.model_ref == "churn-gbm:1" and state.previous_ref == "churn:3"
    assert state.strategy == "basic" and state.promoted_at == now


def test_a_step_holds_until_its_minimum_rows_and_time():
    state = rollout.deploy(
        CHAMPION, "churn", canary(steps=(10, 100), min_step_rows=500, min_step_seconds=300), T0
    ).state
    few_rows = rollout.decide(state, good(step_rows=499), GATES, T0 + timedelta(hours=1))
    assert few_rows.move == "hold" and "500 rows" in few_rows.reason
    too_soon = rollout.decide(state, good(), GATES, T0 + timedelta(seconds=299))
    assert too_soon.move == "hold" and "300 s" in too_soon.reason
    assert rollout.decide(state, good(), GATES, T0 + timedelta(seconds=300)).move == "advance"


def test_an_inconclusive_gate_holds_and_a_failed_gate_rolls_back_mid_step():
    state = rollout.deploy(CHAMPION, "churn", canary(steps=(5, 100)), T0).state
    young = RolloutStats(ArmStats(50_000, 500), ArmStats(20, 0), step_rows=20)
    assert rollout.decide(state, young, GATES, T0 + timedelta(hours=1)).move == "hold"
    decision = rollout.decide(state, bad(), GATES, T0 + timedelta(seconds=5))
    assert decision.move == "rollback"
    assert "gate error_rate failed" in decision.reason
    back = rollout.apply(state, decision, T0 + timedelta(seconds=5))
    assert back is not None
    assert back.state.model_ref == "churn:3" and not back.state.has_challenger
    assert (back.event.action, back.event.actor) == ("rollback", "gate")
    assert "20 errors in 40 rows" in (back.event.reason or "")


def test_a_manual_rollout_waits_for_promote_at_each_step():
    state = rollout.deploy(CHAMPION, "churn", canary(steps=(5, 50, 100), manual=True), T0).state
    later = T0 + timedelta(days=1)
    assert rollout.decide(state, good(), GATES, later).move == "hold"
    assert rollout.decide(state, bad(), GATES, later).move == "rollback"  # gates still watch
    advanced = rollout.promote(state, later, actor="ana")
    assert advanced.event.action == "advance" and advanced.state.weight == 0.5
    assert advanced.state.step_started_at == later


def test_a_shadow_is_compared_but_never_acted_on():
    state = rollout.deploy(
        CHAMPION, "churn", DeployRequest("churn-gbm", 1, strategy="shadow", mirror=0.2), T0
    ).state
    assert (state.strategy, state.mirror, state.weight) == ("shadow", 0.2, 0.0)
    assert rollout.decide(state, bad(), GATES, T0).move == "hold"
    promoted = rollout.promote(state, T0, actor="ana").state
    assert promoted.model_ref == "churn-gbm:1" and promoted.previous_ref == "churn:3"


def test_a_firing_alert_rolls_back_only_during_the_bake_period():
    promoted = rollout.promote(
        rollout.deploy(CHAMPION, "churn", canary(weight=0.1), T0).state, T0
    ).state
    promoted = replace(promoted, bake_seconds=3600)
    alert = RolloutStats(alerts=("error_rate",))
    during = rollout.decide(promoted, alert, GATES, T0 + timedelta(minutes=59))
    assert during.move == "rollback" and "error_rate" in during.reason
    back = rollout.apply(promoted, during, T0 + timedelta(minutes=59))
    assert back is not None and back.state.model_ref == "churn:3"
    assert rollout.decide(promoted, alert, GATES, T0 + timedelta(minutes=61)).move == "none"
    assert rollout.decide(promoted, RolloutStats(), GATES, T0).move == "none"
    # a user may still roll back after the bake period
    assert rollout.rollback(promoted, T0 + timedelta(days=3)).state.model_ref == "churn:3"


def test_rollback_drops_a_challenger_and_keeps_the_champion():
    state = rollout.deploy(CHAMPION, "churn", canary(weight=0.2), T0).state
    back = rollout.rollback(state, T0, actor="ana").state
    assert back.model_ref == "churn:3" and back.strategy == "basic" and back.weight == 0.0
    with pytest.raises(ConflictError, match="nothing to roll back to"):
        rollout.rollback(CHAMPION, T0)
    with pytest.raises(ConflictError, match="no challenger to promote"):
        rollout.promote(CHAMPION, T0)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (canary(), "weight: a canary needs a weight"),
        (canary(weight=0.0), r"weight: 0.0 must be in \(0, 1\)"),
        (canary(weight=1.0), r"weight: 1.0 must be in \(0, 1\)"),
        (canary(weight=0.1, steps=(5, 100)), "either a fixed weight or steps"),
        (canary(steps=(25, 5, 100)), "must increase"),
        (canary(steps=(5, 50)), "must end at 100"),
        (canary(steps=(0, 100)), "1..100"),
        (canary(weight=0.1, manual=True), "manual: only a progressive rollout"),
        (canary(weight=0.1, mirror=0.5), "mirror: only a shadow"),
        (DeployRequest("churn-gbm", 1, strategy="shadow", mirror=1.5), r"mirror: 1.5"),
        (DeployRequest("churn-gbm", 1, strategy="shadow", weight=0.1), "shadow"),
        (DeployRequest("churn-gbm", 1, weight=0.1), "strategy basic"),
        (DeployRequest("churn", 3, strategy="canary", weight=0.1), "already the champion"),
    ],
)
def test_bad_deploys_are_refused_with_the_field_named(request_, message):
    with pytest.raises(InvalidInputError, match=message):
        rollout.deploy(CHAMPION, "churn", request_, T0)


def test_a_challenger_needs_a_champion_first():
    with pytest.raises(ConflictError, match="no champion yet"):
        rollout.deploy(None, "churn", canary(weight=0.1), T0)
