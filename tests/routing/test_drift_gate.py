"""The drift gate (issue 14): a canary challenger's prediction drift against its own reference,
measured from the prediction log by the rollout evaluator, fails a challenger whose outputs
moved and passes one that predicts like it did on its reference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pandas as pd
import pytest
from scipy.stats import wasserstein_distance
from sklearn.pipeline import Pipeline

import relevo
from relevo.datasets import CHURN_TARGET, make_churn
from relevo.monitoring.rollout_drift import challenger_drift
from relevo.routing.deployment import Deployment
from relevo.routing.evaluator import evaluate_once
from relevo.routing.gates import DriftGate, Measurement, RolloutStats


@pytest.fixture
def canary(rv: relevo.Relevo, churn_pipeline: Pipeline, churn_frame: pd.DataFrame) -> Deployment:
    rv.registry.register("churn", churn_pipeline, churn_frame, target=CHURN_TARGET)
    rv.registry.register("churn", churn_pipeline, churn_frame, target=CHURN_TARGET)
    rv.deployments.deploy("churn", "churn:1")
    return rv.deployments.deploy(
        "churn", "churn:2", strategy="canary", weight=0.5, min_step_rows=200
    )


def _log(rv: relevo.Relevo, probabilities: np.ndarray) -> None:
    """Challenger rows in the prediction log, as the server writes them."""
    now = datetime.now(UTC) + timedelta(seconds=1)
    rows = [
        (
            f"id{i:06d}",
            "churn",
            "churn",
            2,
            now,
            None,
            "{}",
            orjson.dumps({"probability": float(p), "label": int(p >= 0.5)}).decode(),
            1.0,
            "challenger",
        )
        for i, p in enumerate(probabilities)
    ]
    rv.store.predictions.insert_many(rows)


def _live(pipeline: Pipeline, n: int) -> np.ndarray:
    frame = make_churn(n, seed=7).drop(columns=[CHURN_TARGET])
    return pipeline.predict_proba(frame)[:, 1]


def test_a_challenger_predicting_as_on_its_reference_measures_small_and_passes(
    rv: relevo.Relevo, canary: Deployment, churn_pipeline: Pipeline, churn_frame: pd.DataFrame
):
    live = _live(churn_pipeline, 1500)
    _log(rv, live)
    measured = challenger_drift(rv, rv.deployments.get("churn"))
    assert measured is not None and measured.rows == 1500
    reference = churn_pipeline.predict_proba(churn_frame.drop(columns=[CHURN_TARGET]))[:, 1]
    exact = wasserstein_distance(reference, live) / reference.std()
    assert abs(measured.value - exact) <= 0.01 + 0.15 * exact
    result = DriftGate().check(rv.deployments.get("churn"), RolloutStats(drift=measured))
    assert result.verdict == "pass", result.detail


def test_a_challenger_whose_outputs_moved_fails_the_gate_and_is_rolled_back(
    rv: relevo.Relevo, canary: Deployment, churn_pipeline: Pipeline, churn_frame: pd.DataFrame
):
    live = np.clip(_live(churn_pipeline, 1500) + 0.35, 0, 1)
    _log(rv, live)
    measured = challenger_drift(rv, rv.deployments.get("churn"))
    assert measured is not None
    reference = churn_pipeline.predict_proba(churn_frame.drop(columns=[CHURN_TARGET]))[:, 1]
    exact = wasserstein_distance(reference, live) / reference.std()
    assert exact > 0.2 and abs(measured.value - exact) <= 0.01 + 0.15 * exact
    found = evaluate_once(rv, "test-holder", 30.0)
    assert found["churn"].decision.move == "rollback"
    after = rv.deployments.get("churn")
    assert not after.has_challenger and after.model_ref == "churn:1"
    reason = rv.deployments.history("churn")[-1].reason or ""
    assert "drift" in reason


def test_the_gate_waits_for_the_smaller_of_its_sample_and_the_step_minimum():
    gate = DriftGate(threshold=0.2, min_rows=500)
    state = Deployment(
        name="d", model_name="m", model_version=1, updated_at=datetime.now(UTC), min_step_rows=200
    )
    few = gate.check(state, RolloutStats(drift=Measurement(0.9, 199)))
    assert few.verdict == "inconclusive" and "200 needed" in few.detail
    assert gate.check(state, RolloutStats(drift=Measurement(0.9, 200))).verdict == "fail"
    assert gate.check(state, RolloutStats(drift=Measurement(0.1, 200))).verdict == "pass"
    assert gate.check(state, RolloutStats()).verdict == "inconclusive"


def test_the_evaluator_reads_the_drift_at_most_every_few_seconds(
    rv: relevo.Relevo,
    canary: Deployment,
    churn_pipeline: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
):
    """The drift measurement costs a read and a parse of 5,000 outputs: the evaluator, which
    looks every second, reads it once per `DRIFT_EVERY_S` (per deployment revision)."""
    from relevo.routing import evaluator

    clock = [1000.0]
    monkeypatch.setattr(evaluator.time, "monotonic", lambda: clock[0])
    evaluator._drift_cache.clear()
    _log(rv, _live(churn_pipeline, 300))
    first = evaluate_once(rv, "test-holder", 30.0)["churn"]
    _log(rv, np.clip(_live(churn_pipeline, 1500) + 0.35, 0, 1))  # drifted rows arrive
    clock[0] += evaluator.DRIFT_EVERY_S / 2
    held = evaluate_once(rv, "test-holder", 30.0)["churn"]
    assert held.decision.move != "rollback"  # the cached measurement: 300 rows, undrifted
    drift = [g.detail for g in held.decision.results if g.gate == "drift"]
    assert len(drift) == 1 and "over 300 rows" in drift[0]
    assert drift == [g.detail for g in first.decision.results if g.gate == "drift"]
    clock[0] += evaluator.DRIFT_EVERY_S
    assert evaluate_once(rv, "test-holder", 30.0)["churn"].decision.move == "rollback"


def test_a_step_minimum_under_the_gates_sample_does_not_roll_back_an_equal_challenger(
    rv: relevo.Relevo, canary: Deployment, churn_pipeline: Pipeline
):
    """`--min-step-rows 50`: the gate decides from 50 rows, whose distance scatters far more
    than 500 rows' (a fixed 0.2 failed a challenger predicting exactly as on its reference in
    a quarter of the samples or more); one whose outputs moved still fails at 50 rows."""
    from relevo.monitoring.drift.numeric import binned_wasserstein
    from relevo.monitoring.reference import PREDICTION

    column = rv.registry.reference_profile("churn:2").prediction.columns[PREDICTION]
    state = rv.deployments.deploy(
        "churn", "churn:2", strategy="canary", weight=0.5, min_step_rows=50
    )
    gate = DriftGate()
    live = _live(churn_pipeline, 20_000)
    rng = np.random.default_rng(0)

    def verdict(outputs: np.ndarray) -> str:
        value = binned_wasserstein(column, column.empty_like().update(list(outputs)))
        return gate.check(state, RolloutStats(drift=Measurement(value, len(outputs)))).verdict

    for rows in (50, 100, 200):
        verdicts = [verdict(rng.choice(live, rows, replace=False)) for _ in range(200)]
        assert verdicts.count("fail") <= 2, (rows, verdicts.count("fail"))
    moved = np.clip(rng.choice(live, 50, replace=False) + 0.35, 0, 1)
    assert verdict(moved) == "fail"
