"""The latency gate compares the challenger's p99 over its n rows with the champion's latency at
the quantile matched to n (`matched_quantile`): a challenger exactly as fast as its champion
fails it at most 1 % of the time, however few rows it has next to the champion's many; the
comparison with the champion's plain p99 fails such a challenger far more often. Checked by
simulation (NumPy), and end to end on rows in the prediction log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom
from sklearn.pipeline import Pipeline

import relevo
from relevo.datasets import CHURN_TARGET
from relevo.routing.gates import matched_quantile
from relevo.routing.stats import rollout_stats


def nearest_rank(values: np.ndarray, q: float) -> float:
    """The store's quantile: the (int(n (1 - q)) + 1)-th largest value."""
    ordered = np.sort(values)[::-1]
    return float(ordered[int(values.size * (1.0 - q))])


@pytest.mark.parametrize("rows", [1, 20, 100, 500, 3000])
def test_the_matched_quantile_is_the_binomial_tail_of_the_p99s_rank(rows: int):
    q = matched_quantile(rows)
    k = int(rows * 0.01) + 1
    # the chance that k or more of n rows lie above the reference's q-quantile is alpha
    assert binom.sf(k - 1, rows, 1.0 - q) == pytest.approx(0.01, rel=1e-6)
    assert 0.99 <= q < 1.0


def test_the_matched_quantile_tends_to_the_p99():
    qs = [matched_quantile(n) for n in (500, 5_000, 100_000, 1_000_000)]
    assert qs == sorted(qs, reverse=True)
    assert qs[-1] == pytest.approx(0.99, abs=5e-4)
    with pytest.raises(ValueError, match="rows"):
        matched_quantile(0)


@pytest.mark.parametrize("rows", [60, 500])
def test_a_challenger_as_fast_as_its_champion_fails_about_one_percent_of_the_time(rows: int):
    """20,000 simulated challengers with the champion's own (heavy-tailed) latencies."""
    rng = np.random.default_rng(rows)
    trials = 20_000
    samples = rng.lognormal(mean=1.5, sigma=0.8, size=(trials, rows))
    k = int(rows * 0.01)
    p99 = -np.partition(-samples, k, axis=1)[:, k]  # each trial's nearest-rank p99
    true_q = np.exp(1.5 + 0.8 * _probit(matched_quantile(rows)))  # the lognormal's quantile
    true_p99 = np.exp(1.5 + 0.8 * _probit(0.99))
    matched_rate = float(np.mean(p99 > true_q))
    plain_rate = float(np.mean(p99 > true_p99))
    assert matched_rate == pytest.approx(0.01, abs=0.0035)
    assert plain_rate > 0.25  # the plain comparison: a quarter or more of equal challengers


def _probit(p: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(p))


def test_rollout_stats_read_the_matched_latency_from_the_log(
    rv: relevo.Relevo, churn_pipeline: Pipeline, churn_frame: pd.DataFrame
):
    rv.registry.register("churn", churn_pipeline, churn_frame, target=CHURN_TARGET)
    rv.registry.register("churn", churn_pipeline, churn_frame, target=CHURN_TARGET)
    rv.deployments.deploy("churn", "churn:1")
    rv.deployments.deploy("churn", "churn:2", strategy="canary", weight=0.1)
    rng = np.random.default_rng(3)
    champion = rng.lognormal(1.5, 0.8, 5_000)
    challenger = rng.lognormal(1.5, 0.8, 400)
    now = datetime.now(UTC) + timedelta(seconds=1)
    rows = [
        (f"a{i:05d}", "churn", "churn", 1, now, None, "{}", "{}", float(ms), "champion")
        for i, ms in enumerate(champion)
    ] + [
        (f"b{i:05d}", "churn", "churn", 2, now, None, "{}", "{}", float(ms), "challenger")
        for i, ms in enumerate(challenger)
    ]
    rv.store.predictions.insert_many(rows)
    stats = rollout_stats(rv.store, rv.deployments.get("churn"))
    assert stats.challenger.rows == 400
    # the tally's histogram reads quantiles within 0.5 % of the exact nearest-rank ones
    exact = nearest_rank(challenger, 0.99)
    assert stats.challenger.latency_p99_ms == pytest.approx(exact, rel=0.005)
    assert stats.champion.latency_p99_ms == pytest.approx(nearest_rank(champion, 0.99), rel=0.005)
    expected = nearest_rank(champion, matched_quantile(400))
    assert stats.champion_latency_matched_ms == pytest.approx(expected, rel=0.005)
    assert stats.champion_latency_matched_ms > stats.champion.latency_p99_ms
