"""DeploymentService on a real store: every change saved with its audit event and seen by
another handle on the same database; gates evaluated and acted on; inputs checked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier

import relevo
from relevo.datasets import CHURN_FEATURES, CHURN_TARGET
from relevo.errors import ConflictError, InvalidInputError, NotFoundError
from relevo.routing.gates import ArmStats, Measurement, RolloutStats
from relevo.routing.service import DeploymentService
from relevo.store.deployments import StaleStateError


class Clock:
    """A clock the test moves by hand: step durations without sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def models(rv: relevo.Relevo, churn_pipeline: Pipeline, churn_frame: pd.DataFrame) -> relevo.Relevo:
    """churn:1, churn:2 and churn-tree:1 (another estimator on the same data)."""
    frame = churn_frame.head(400)
    numeric = [c for c in CHURN_FEATURES if pd.api.types.is_numeric_dtype(frame[c])]
    tree = DecisionTreeClassifier(max_depth=3).fit(frame[numeric], frame[CHURN_TARGET])
    rv.registry.register("churn", churn_pipeline, frame, target=CHURN_TARGET)
    rv.registry.register("churn", churn_pipeline, frame, target=CHURN_TARGET)
    rv.registry.register(
        "churn-tree", tree, frame[[*numeric, "customer_id", CHURN_TARGET]], target=CHURN_TARGET
    )
    return rv


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(models: relevo.Relevo, clock: Clock) -> DeploymentService:
    return DeploymentService(models.store, models.registry, clock=clock)


def good(step_rows: int = 1000) -> RolloutStats:
    return RolloutStats(
        ArmStats(50_000, 500, 10.0),
        ArmStats(2000, 20, 11.0),
        step_rows=step_rows,
        drift=Measurement(0.05, 2000),
    )


def test_a_canary_of_another_model_is_promoted_and_rolled_back_with_its_history(
    service, relevo_home: Path, database_url: str
):
    service.deploy("churn", "churn:1", key="customer_id", actor="ana")
    canary = service.deploy(
        "churn", "churn-tree:1", weight=0.1, actor="ana", reason="a tree, cheaper to run"
    )
    assert (canary.strategy, canary.challenger_ref, canary.weight) == (
        "canary",
        "churn-tree:1",
        0.1,
    )
    assert canary.model_ref == "churn:1" and canary.key_column == "customer_id"

    # another replica on the same database sees the same state
    with relevo.Relevo(home=relevo_home, database_url=database_url) as other:
        assert other.deployments.get("churn") == canary

    promoted = service.promote("churn", actor="token:ci")
    assert promoted.model_ref == "churn-tree:1" and promoted.previous_ref == "churn:1"
    back = service.rollback("churn", actor="bob", reason="labels say worse")
    assert back.model_ref == "churn:1"

    history = service.history("churn")
    assert [(e.action, e.actor) for e in history] == [
        ("deploy", "ana"),
        ("deploy", "ana"),
        ("promote", "token:ci"),
        ("rollback", "bob"),
    ]
    assert history[1].reason == "a tree, cheaper to run"
    assert history[3].reason == "labels say worse"
    assert [e.state["revision"] for e in history] == [1, 2, 3, 4]
    assert history[-1].state == back.to_dict()


def test_a_failing_challenger_is_rolled_back_by_its_gate(service):
    service.deploy("churn", "churn:1")
    service.deploy("churn", "churn:2", rollout=True)
    stats = RolloutStats(ArmStats(5000, 50), ArmStats(40, 20), step_rows=40)

    evaluation = service.evaluate("churn", stats)

    assert evaluation.changed and evaluation.decision.move == "rollback"
    assert evaluation.state.model_ref == "churn:1" and not evaluation.state.has_challenger
    last = service.history("churn")[-1]
    assert (last.action, last.actor) == ("rollback", "gate")
    assert "gate error_rate failed: 20 errors in 40 rows" in (last.reason or "")


def test_a_rollout_advances_when_its_gates_pass_and_its_step_is_served(service, clock):
    service.deploy("churn", "churn:1")
    service.deploy(
        "churn", "churn-tree:1", steps="10,50,100", min_step_rows=500, min_step_seconds=60
    )
    assert service.evaluate("churn", good()).decision.move == "hold"  # 60 s not yet served
    moves = []
    for _ in range(3):
        clock.advance(61)
        evaluation = service.evaluate("churn", good())
        moves.append((evaluation.decision.move, evaluation.state.weight))
    assert moves == [("advance", 0.5), ("advance", 1.0), ("promote", 0.0)]
    assert service.get("churn").model_ref == "churn-tree:1"
    assert [e.action for e in service.history("churn")] == [
        "deploy",
        "deploy",
        "advance",
        "advance",
        "promote",
    ]


def test_a_promotion_bakes_and_a_firing_alert_rolls_it_back(service, clock):
    service.deploy("churn", "churn:1")
    service.deploy("churn", "churn:2", weight=0.2, bake_seconds=600)
    service.promote("churn", actor="ana")
    clock.advance(300)
    evaluation = service.evaluate("churn", RolloutStats(alerts=("latency_p99",)))
    assert evaluation.decision.move == "rollback"
    assert service.get("churn").model_ref == "churn:1"


ALERT = RolloutStats(alerts=("latency_p99: p99 latency 812 ms over 300 rows",))


def test_a_bake_that_ended_is_not_brought_back_by_a_later_deploy(service, clock):
    """A promotion baked for 60 s; half an hour later a redeploy of the same champion (a new
    key) took the default bake of an hour from the settings, and a canary withdrawn later
    left its own: both brought the ended bake back, and an alert rolled the champion back to
    the model it had replaced half an hour before."""
    service.deploy("churn", "churn:1", key="customer_id")
    service.deploy("churn", "churn:2", weight=0.2, bake_seconds=60)
    service.promote("churn")
    clock.advance(1800)
    rekeyed = service.deploy("churn", "churn:2", key=None)  # bake_seconds: the setting, 3600
    assert (rekeyed.model_ref, rekeyed.previous_ref, rekeyed.bake_seconds) == (
        "churn:2",
        "churn:1",
        60.0,
    )
    evaluation = service.evaluate("churn", ALERT)
    assert evaluation.decision.move == "none" and not evaluation.changed
    assert service.get("churn").model_ref == "churn:2"

    service.deploy("churn", "churn-tree:1", weight=0.1)  # bake_seconds 3600, once promoted
    withdrawn = service.rollback("churn")
    assert withdrawn.model_ref == "churn:2" and withdrawn.previous_ref == "churn:1"
    evaluation = service.evaluate("churn", ALERT)
    assert evaluation.decision.move == "none" and not evaluation.changed
    assert service.get("churn").model_ref == "churn:2"
    assert [e.action for e in service.history("churn")][-1] == "rollback"  # the canary's
    # the champion it replaced can still be brought back by hand
    assert service.rollback("churn").model_ref == "churn:1"


def test_a_redeploy_of_the_same_champion_keeps_its_bake_as_it_was(service, clock):
    service.deploy("churn", "churn:1", key="customer_id")
    service.deploy("churn", "churn:2", weight=0.2, bake_seconds=600)
    service.promote("churn")
    clock.advance(300)
    service.deploy("churn", "churn:2", key=None, bake_seconds=7200)
    clock.advance(301)  # 601 s after the promotion: its bake of 600 s has ended
    assert service.evaluate("churn", ALERT).decision.move == "none"
    clock.advance(-2)  # 599 s: still baking, and an alert rolls back
    assert service.evaluate("churn", ALERT).decision.move == "rollback"
    assert service.get("churn").model_ref == "churn:1"


def test_a_whole_min_step_rows_given_as_a_float_is_stored_as_that_count(service):
    service.deploy("churn", "churn:1")
    canary = service.deploy("churn", "churn:2", rollout=True, min_step_rows=50.0)
    assert canary.min_step_rows == 50 and type(canary.min_step_rows) is int
    assert type(service.get("churn").min_step_rows) is int


def test_the_key_and_the_logged_extras_are_kept_unless_changed(service):
    service.deploy("churn", "churn:1", key="customer_id", log_extra=["region", "region", "app"])
    again = service.deploy("churn", "churn:2")
    assert again.key_column == "customer_id" and again.log_extra == ("region", "app")
    cleared = service.deploy("churn", "churn:1", key=None, log_extra=[])
    assert cleared.key_column is None and cleared.log_extra == ()


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda s: s.deploy("x" * 201, "churn:1"), InvalidInputError, "invalid deployment name"),
        (lambda s: s.deploy("a/b", "churn:1"), InvalidInputError, "invalid deployment name"),
        (lambda s: s.deploy("churn", "nope:1"), NotFoundError, "nope"),
        (lambda s: s.deploy("churn", "churn:2", strategy="blue"), InvalidInputError, "strategy"),
        (lambda s: s.deploy("churn", "churn:2", steps="5,x"), InvalidInputError, "steps"),
        (lambda s: s.deploy("churn", "churn:2", steps="5,50"), InvalidInputError, "end at 100"),
        (
            lambda s: s.deploy("churn", "churn:2", strategy="shadow", rollout=True),
            InvalidInputError,
            "steps",
        ),
        (lambda s: s.deploy("churn", "churn:1", weight=0.1), InvalidInputError, "champion"),
        (lambda s: s.deploy("churn", "churn:2", weight=1.5), InvalidInputError, "weight"),
        (
            lambda s: s.deploy("churn", "churn:2", weight=0.1, key="tenure_months"),
            InvalidInputError,
            "routing key 'tenure_months' is a feature",
        ),
        (lambda s: s.deploy("churn", "churn:2", min_step_rows=-1), InvalidInputError, "min_step"),
        (
            lambda s: s.deploy("churn", "churn:2", rollout=True, min_step_rows=50.5),
            InvalidInputError,
            "min_step_rows: 50.5 must be a whole number",
        ),
        (lambda s: s.promote("churn"), ConflictError, "no challenger"),
        (lambda s: s.history("other"), NotFoundError, "deployment 'other' not found"),
        (lambda s: s.rollback("other"), NotFoundError, "not found"),
    ],
)
def test_bad_requests_get_clear_errors_and_change_nothing(service, call, error, message):
    service.deploy("churn", "churn:1")
    with pytest.raises(error, match=message):
        call(service)
    assert service.get("churn").revision == 1
    assert len(service.history("churn")) == 1


def test_one_evaluator_at_a_time_across_replicas(
    service, models, relevo_home: Path, database_url: str, clock
):
    with relevo.Relevo(home=relevo_home, database_url=database_url) as other:
        replica = DeploymentService(other.store, other.registry, clock=clock)
        assert service.acquire_evaluator("replica-a", ttl_s=10)
        assert not replica.acquire_evaluator("replica-b", ttl_s=10)
        assert service.acquire_evaluator("replica-a", ttl_s=10)  # renews its own
        clock.advance(11)  # replica-a stopped renewing: its lease lapses
        assert replica.acquire_evaluator("replica-b", ttl_s=10)
        assert not service.acquire_evaluator("replica-a", ttl_s=10)
        assert replica.release_evaluator("replica-b")
        assert service.acquire_evaluator("replica-a", ttl_s=10)


def meddled(
    models: relevo.Relevo, clock: Clock, gates: DeploymentService, stats
) -> DeploymentService:
    """A user's service whose clock lets the gates (`gates`, evaluating `stats`) act once,
    between the user's read of the state and its save: what a race between them looks like."""
    pending = [lambda: gates.evaluate("churn", stats)]

    def meddling_clock() -> datetime:
        while pending:
            pending.pop()()
        return clock()

    return DeploymentService(models.store, models.registry, clock=meddling_clock)


def failing() -> RolloutStats:
    return RolloutStats(ArmStats(5000, 50), ArmStats(40, 20), step_rows=40)


def test_a_rollback_racing_the_gates_rollback_is_refused_not_made_twice(service, models, clock):
    service.deploy("churn", "churn:1")
    service.deploy("churn", "churn:2")  # the champion now, churn:1 kept for a rollback
    service.deploy("churn", "churn-tree:1", weight=0.1)
    user = meddled(models, clock, service, failing())
    with pytest.raises(ConflictError, match="changed while the rollback was being made"):
        user.rollback("churn", actor="ana")
    state = service.get("churn")
    assert state.model_ref == "churn:2" and not state.has_challenger  # not back to churn:1
    assert [(e.action, e.actor) for e in service.history("churn")][-1] == ("rollback", "gate")


def test_a_promote_racing_the_gates_advance_does_not_skip_a_step(service, models, clock):
    service.deploy("churn", "churn:1")
    service.deploy(
        "churn", "churn-tree:1", steps="10,50,100", min_step_rows=500, min_step_seconds=60
    )
    clock.advance(61)
    user = meddled(models, clock, service, good())
    with pytest.raises(ConflictError, match="advance by gate"):
        user.promote("churn", actor="ana")
    assert service.get("churn").weight == 0.5  # the gates' step, not 100 %


def test_the_gates_decide_on_the_state_their_numbers_describe(service):
    service.deploy("churn", "churn:1")
    measured = service.deploy("churn", "churn:2", weight=0.1)
    service.deploy("churn", "churn-tree:1", weight=0.1)  # replaced while churn:2 was measured
    evaluation = service.evaluate("churn", failing(), state=measured)
    assert not evaluation.changed and evaluation.decision.move == "hold"
    assert service.get("churn").challenger_ref == "churn-tree:1"  # never answered: kept


def test_a_one_step_rollout_to_all_traffic_is_refused(service):
    service.deploy("churn", "churn:1")
    with pytest.raises(InvalidInputError, match=r"\[100\] sends every row to the challenger"):
        service.deploy("churn", "churn:2", steps="100")
    assert service.get("churn").revision == 1


def test_a_revision_the_deployment_never_had_is_named_as_such_not_as_a_change(
    rv, churn_pipeline, churn_frame
):
    a = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    b = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", a.ref)
    assert rv.deployments.deploy("churn", b.ref, steps=[5, 25, 50, 100], manual=True).revision == 2
    with pytest.raises(StaleStateError) as typo:
        rv.deployments.promote("churn", revision=12)
    said = str(typo.value)
    assert "is at revision 2, not 12" in said and "changed while" not in said
    assert rv.deployments.get("churn").revision == 2  # nothing done
    assert rv.deployments.promote("churn", revision=2).weight == 0.25


def test_a_basic_deploy_of_the_canary_itself_says_it_became_the_champion(
    rv, churn_pipeline, churn_frame
):
    a = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    b = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", a.ref)
    rv.deployments.deploy("churn", b.ref, weight=0.1)
    assert rv.deployments.deploy("churn", b.ref).model_ref == b.ref
    last = rv.deployments.history("churn")[-1]
    assert last.reason == f"the canary challenger {b.ref} became the champion at once"
