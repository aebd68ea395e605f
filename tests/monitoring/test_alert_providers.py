"""The built-in providers on a real store (SQLite and PostgreSQL): volumes from profile buckets
and from the prediction log, a silent replica, failed rows, p99 latency, gate rollbacks; and
the no_predictions threshold against SciPy's Poisson distribution."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import stats
from sqlalchemy import insert

from relevo.monitoring.alerts import config, health, traffic
from relevo.monitoring.alerts.volume import Volumes, expected_rows, judge, minimum_expected
from relevo.store.tables import deployment_events, predictions, profile_buckets

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def churn(rv, churn_pipeline, churn_frame):
    version = rv.registry.register("churn", churn_pipeline, churn_frame.head(300), target="churned")
    rv.deployments.deploy("churn", version.ref)
    return rv


def buckets(rv, minutes: range, per_replica: dict[str, int], deployment="churn"):
    rows = [
        {
            "deployment": deployment,
            "model_name": "churn",
            "model_version": 1,
            "role": "champion",
            "start": NOW - timedelta(minutes=m + 1),
            "seconds": 60,
            "replica": replica,
            "rows": n,
            "payload": "{}",
            "updated_at": NOW,
        }
        for m in minutes
        for replica, n in per_replica.items()
    ]
    with rv.store.engine.begin() as conn:
        conn.execute(insert(profile_buckets), rows)


def logged(
    rv,
    at: list[datetime],
    role="champion",
    latency=10.0,
    deployment="churn",
    start=0,
    version=1,
    challenger=None,
):
    rows = [
        {
            "id": f"p{start + i:08d}",
            "deployment": deployment,
            "model_name": "churn",
            "model_version": version,
            "challenger": challenger,
            "created_at": t,
            "features": "{}",
            "output": "{}",
            "latency_ms": latency if np.isscalar(latency) else float(latency[i]),
            "role": role,
        }
        for i, t in enumerate(at)
    ]
    with rv.store.engine.begin() as conn:
        conn.execute(insert(predictions), rows)


def test_a_replica_restarted_under_a_new_name_is_not_a_silent_replica(churn):
    """A rolling update: b came back as c ten minutes ago (replicas are named by host and
    process). b's name fell silent while as many replicas answer as before: no alert. Without
    a replacement b's silence fires (the test below)."""
    rv = churn
    buckets(rv, range(0, 10), {"a": 30, "c": 30})
    buckets(rv, range(10, 120), {"a": 30, "b": 30})
    found = {s.subject: s for s in traffic.signals(rv, "churn", NOW)}
    assert not found[""].firing
    assert not found["b"].firing and "it was replaced" in found["b"].message


def test_the_empty_window_threshold_is_poisson():
    """An empty window is flagged when exp(-expected) < alpha, as SciPy's Poisson says."""
    for alpha in (1e-2, 1e-4, 1e-6):
        floor = minimum_expected(alpha)
        assert stats.poisson.pmf(0, floor) == pytest.approx(alpha)
        assert stats.poisson.pmf(0, floor * 1.01) < alpha < stats.poisson.pmf(0, floor * 0.99)
    assert expected_rows([10, 30, 20, None], [5, 7, 9]) == 7  # the lower of the medians
    assert expected_rows([None, None], [1, 2]) is None  # too little history


def test_silence_fires_only_when_history_expects_traffic():
    busy = [{"": 50}] * 7
    quiet = [{"": 0}] * 7
    (s,) = judge("churn", Volumes({"": 0}, busy, busy[:5]), 1e-4, 300)
    assert s.firing and s.threshold == 50 and "no predictions in the last 5 min" in s.message
    (s,) = judge("churn", Volumes({"": 0}, quiet, busy[:5]), 1e-4, 300)  # quiet at this hour
    assert not s.firing and s.evaluable
    (s,) = judge("churn", Volumes({"": 0}, busy, [{"": 8}] * 5), 1e-4, 300)  # 8 < 9.2 expected
    assert not s.firing
    (s,) = judge("churn", Volumes({"": 3}, busy, busy), 1e-4, 300)
    assert not s.firing


def test_no_predictions_from_profile_buckets_with_a_silent_replica(churn):
    rv = churn
    buckets(rv, range(0, 10), {"a": 30, "b": 0})  # b silent for the last ten minutes
    buckets(rv, range(10, 120), {"a": 30, "b": 30})
    found = {s.subject: s for s in traffic.signals(rv, "churn", NOW)}
    assert set(found) == {"", "a", "b"}
    assert not found[""].firing and found[""].value == 150
    assert found["b"].firing and found["b"].value == 0 and found["b"].threshold == 150
    assert "replica b answered nothing" in found["b"].message
    assert not found["a"].firing
    # the whole deployment silent for ten minutes: the deployment's signal fires
    later = NOW + timedelta(minutes=10)
    found = {s.subject: s for s in traffic.signals(rv, "churn", later)}
    assert found[""].firing and found[""].threshold == 300


def test_no_predictions_from_the_prediction_log_when_there_are_no_buckets(churn):
    rv = churn
    config.update(rv, "churn", ["alerts.no_predictions.window_s=10"])
    # a row a second for two minutes, then nothing for the last 15 seconds
    logged(rv, [NOW - timedelta(seconds=s) for s in range(15, 135)])
    (s,) = traffic.signals(rv, "churn", NOW)
    assert s.firing and s.value == 0 and s.threshold == 10 and "10 s" in s.message
    (s,) = traffic.signals(rv, "churn", NOW - timedelta(seconds=15))
    assert not s.firing and s.value == 10
    # before the deployment's first row there is no history to expect anything from
    (s,) = traffic.signals(rv, "churn", NOW - timedelta(seconds=100))
    assert not s.evaluable


def test_model_errors_is_the_share_of_failed_rows(churn):
    rv = churn
    at = [NOW - timedelta(seconds=1 + i) for i in range(200)]
    logged(rv, at[:180])
    logged(rv, at[180:], role="fallback", start=1000)  # a challenger failed on 20 rows
    (s,) = health.model_errors(rv, "churn", NOW)
    assert s.firing and s.value == pytest.approx(0.1) and s.threshold == 0.05
    assert "20 of 200 rows failed" in s.message
    config.update(rv, "churn", ["alerts.model_errors.max_share=0.2"])
    (s,) = health.model_errors(rv, "churn", NOW)
    assert not s.firing
    config.update(rv, "churn", ["alerts.model_errors.min_rows=500"])
    (s,) = health.model_errors(rv, "churn", NOW)
    assert not s.evaluable


def test_latency_p99_matches_numpy(churn):
    rv = churn
    rng = np.random.default_rng(0)
    latency = rng.lognormal(np.log(200), 0.6, size=400)
    logged(rv, [NOW - timedelta(seconds=1 + i // 2) for i in range(400)], latency=latency)
    (s,) = health.latency_p99(rv, "churn", NOW)
    # the nearest-rank p99: NumPy's "inverted_cdf" method over the same rows
    assert s.value == pytest.approx(np.quantile(latency, 0.99, method="inverted_cdf"))
    assert s.firing == (s.value > 500)
    config.update(rv, "churn", [f"alerts.latency_p99.threshold_ms={math.ceil(s.value)}"])
    (s,) = health.latency_p99(rv, "churn", NOW)
    assert not s.firing


def test_errors_and_latency_after_a_swap_are_the_new_champions(churn, churn_pipeline, churn_frame):
    """After a swap the rules judged the window's rows whoever answered them: the old
    champion's slow rows and its withdrawn canary's failures fired the new champion's
    latency_p99 and model_errors (and, during the bake period, rolled it back)."""
    rv = churn
    for _ in range(3):  # churn:2, churn:3, churn:4
        rv.registry.register("churn", churn_pipeline, churn_frame.head(300), target="churned")
    at = [NOW - timedelta(seconds=1 + i / 4) for i in range(600)]
    logged(rv, at[300:], latency=900.0)  # churn:1, slow
    logged(rv, at[250:300], role="fallback", challenger="churn:2", start=1000)  # a canary failed
    rv.deployments.deploy("churn", "churn:3")  # a swap: churn:3 answers from here on
    logged(rv, at[:250], version=3, start=2000)  # fast, no failure
    (latency,) = health.latency_p99(rv, "churn", NOW)
    assert not latency.firing and latency.value == 10.0
    assert "over 250 rows" in latency.message
    (errors,) = health.model_errors(rv, "churn", NOW)
    assert not errors.firing and "0 of 250 rows failed" in errors.message
    # a canary's rows are the deployment's too: its challenger's, and the rows it failed on
    rv.deployments.deploy("churn", "churn:4", strategy="canary", weight=0.1)
    logged(rv, at[:100], version=4, role="challenger", latency=700.0, start=3000)
    logged(rv, at[100:130], version=3, role="fallback", challenger="churn:4", start=4000)
    (errors,) = health.model_errors(rv, "churn", NOW)
    assert errors.firing and "30 of 380 rows failed" in errors.message
    (latency,) = health.latency_p99(rv, "churn", NOW)
    assert latency.firing and latency.value == 700.0 and "over 380 rows" in latency.message
    # churn:4 promoted: the rows it answered and failed on as the challenger are its own
    rv.deployments.promote("churn")
    (errors,) = health.model_errors(rv, "churn", NOW)
    assert errors.firing and "30 of 130 rows failed" in errors.message


def test_a_gate_rollback_fires_with_its_reason(churn):
    rv = churn
    (s,) = health.rollout_gate(rv, "churn", NOW)
    assert not s.firing
    with rv.store.engine.begin() as conn:
        conn.execute(
            insert(deployment_events).values(
                deployment="churn",
                action="rollback",
                state={},
                actor="gate",
                reason="gate error_rate failed: 40 errors in 100 rows",
                created_at=NOW - timedelta(minutes=5),
            )
        )
    (s,) = health.rollout_gate(rv, "churn", NOW)
    assert s.firing and "gate error_rate failed: 40 errors in 100 rows" in s.message
    (s,) = health.rollout_gate(rv, "churn", NOW + timedelta(hours=1))
    assert not s.firing
