"""CBPE: estimated metrics against scikit-learn, their intervals' coverage, calibration and the
concept-drift check on early labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from analysis_models import scores
from scipy import stats
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from relevo.datasets import make_churn
from relevo.errors import InvalidInputError
from relevo.feedback.estimate import (
    CONCEPT_DRIFT_MESSAGE,
    calibration,
    concept_drift,
    estimate_performance,
    poisson_binomial_pmf,
    poisson_binomial_range,
)


@pytest.fixture(scope="module")
def window_proba() -> np.ndarray:
    return scores(make_churn(5000, seed=202))


def test_estimates_equal_sklearn_on_rows_weighted_by_their_probabilities(
    window_proba: np.ndarray,
) -> None:
    # Each row counted as a positive with weight p and as a negative with weight 1 - p is
    # the expected confusion matrix; scikit-learn's weighted metrics on it are the estimates.
    p = np.round(window_proba, 2)  # ties, to check they are handled as scikit-learn does
    est = estimate_performance(p, threshold=0.4)
    y = np.r_[np.ones(p.size), np.zeros(p.size)]
    pred = np.r_[p, p] >= 0.4
    w = np.r_[p, 1 - p]
    assert est.accuracy == pytest.approx(accuracy_score(y, pred, sample_weight=w), abs=1e-12)
    assert est.precision == pytest.approx(precision_score(y, pred, sample_weight=w), abs=1e-12)
    assert est.recall == pytest.approx(recall_score(y, pred, sample_weight=w), abs=1e-12)
    assert est.f1 == pytest.approx(f1_score(y, pred, sample_weight=w), abs=1e-12)
    assert est.roc_auc == pytest.approx(roc_auc_score(y, np.r_[p, p], sample_weight=w), abs=1e-12)
    assert est.tp + est.fp + est.fn + est.tn == pytest.approx(p.size)
    assert est.rows == p.size and est.threshold == 0.4


def test_realised_metrics_fall_in_their_intervals_at_about_the_stated_rate(
    window_proba: np.ndarray,
) -> None:
    """Labels drawn from the model's own probabilities: 95 % intervals cover ~95 % of draws."""
    p = window_proba[:2000]
    est = estimate_performance(p)
    inside = dict.fromkeys(("accuracy", "precision", "recall", "f1", "roc_auc"), 0)
    rng = np.random.default_rng(7)  # label draws independent of the estimate's own seed
    for _ in range(200):
        y = (rng.random(p.size) < p).astype(int)
        pred = p >= 0.5
        realised = {
            "accuracy": accuracy_score(y, pred),
            "precision": precision_score(y, pred),
            "recall": recall_score(y, pred),
            "f1": f1_score(y, pred),
            "roc_auc": roc_auc_score(y, p),
        }
        for metric, value in realised.items():
            _, low, high = est.interval(metric)
            inside[metric] += low <= value <= high
    # 190 of 200 expected; the binomial 99.9 % range is about 180..198
    for metric, count in inside.items():
        assert 178 <= count <= 200, (metric, count)
    # and the intervals are not uselessly wide: a few points around ~0.8
    assert est.accuracy_high - est.accuracy_low < 0.05
    assert est.roc_auc_high - est.roc_auc_low < 0.05


def test_the_interval_is_reproducible_and_json_safe(window_proba: np.ndarray) -> None:
    a, b = estimate_performance(window_proba), estimate_performance(window_proba)
    assert a == b
    data = a.to_dict()
    assert data["roc_auc"]["low"] == a.roc_auc_low
    assert set(data) >= {"rows", "accuracy", "precision", "recall", "f1", "roc_auc", "confusion"}
    one_class = estimate_performance(np.zeros(10))
    assert one_class.accuracy == 1.0 and math.isnan(one_class.roc_auc)
    assert one_class.to_dict()["roc_auc"]["estimate"] is None


def test_bad_probabilities_are_refused_with_the_row_named() -> None:
    with pytest.raises(InvalidInputError, match=r"row 2 is 1\.5"):
        estimate_performance(np.array([0.1, 0.2, 1.5]))
    with pytest.raises(InvalidInputError, match="row 0 is nan"):
        estimate_performance(np.array([math.nan]))
    with pytest.raises(InvalidInputError, match="empty"):
        estimate_performance(np.array([]))
    with pytest.raises(InvalidInputError, match="0/1 labels: row 1"):
        calibration(np.array([0.1, 0.2]), np.array([0, 2]))


def test_calibration_table_and_ece_match_sklearn_calibration_curve() -> None:
    frame = make_churn(5000, seed=303)  # held out: the model never saw these customers
    p, y = scores(frame), frame["churned"].to_numpy()
    check = calibration(p, y)
    observed, predicted = calibration_curve(y, p, n_bins=10)
    filled = [b for b in check.table if b.rows > 0]
    assert [b.observed_rate for b in filled] == pytest.approx(observed, abs=1e-12)
    assert [b.mean_proba for b in filled] == pytest.approx(predicted, abs=1e-12)
    rows = np.array([b.rows for b in filled])
    ece = float(np.sum(rows / rows.sum() * np.abs(observed - predicted)))
    assert check.ece == pytest.approx(ece, abs=1e-12)
    assert check.ok and "calibrated" in check.note and check.rows == 5000
    assert check.ece_noise < 0.05
    assert check.to_dict()["table"][0]["low"] == 0.0


def test_a_miscalibrated_model_gets_a_clear_note() -> None:
    frame = make_churn(5000, seed=303)
    p, y = scores(frame), frame["churned"].to_numpy()
    overconfident = 1 / (1 + np.exp(-3 * np.log(p / (1 - p))))  # log-odds tripled
    check = calibration(overconfident, y)
    assert not check.ok
    assert check.note.startswith("not calibrated") and "not meaningful" in check.note
    few = calibration(p[:60], y[:60], max_ece=0.02)
    assert not few.ok and few.note.startswith("cannot tell")


def test_changed_churn_mechanism_is_flagged_from_early_labels() -> None:
    """The model learnt the old mechanism; the estimate (from its scores) stays put while
    the realised metrics on 500 early labels fall: the check says so."""
    for seed in (11, 12, 13):
        frame = make_churn(5000, seed=seed, mechanism_shift=1.0)
        p, y = scores(frame), frame["churned"].to_numpy()
        est = estimate_performance(p)
        realised = accuracy_score(y, p >= 0.5)
        assert realised < est.accuracy_low  # the estimate is wrong for this window
        check = concept_drift(est, p[:500], y[:500])
        assert check.flag
        assert check.message.startswith(CONCEPT_DRIFT_MESSAGE)
        assert check.to_dict()["flag"] is True and check.rows == 500
        realised_by = {c.metric: c.realised for c in check.checks}
        assert realised_by["roc_auc"] == pytest.approx(roc_auc_score(y[:500], p[:500]), abs=1e-12)
        assert realised_by["accuracy"] == accuracy_score(y[:500], p[:500] >= 0.5)


def test_no_flag_without_a_change_even_when_early_labels_are_not_a_random_sample() -> None:
    flags = []
    for seed in (21, 22, 23, 24, 25):
        frame = make_churn(5000, seed=seed)
        p, y = scores(frame), frame["churned"].to_numpy()
        est = estimate_performance(p)
        flags.append(concept_drift(est, p[:500], y[:500]).flag)
        # the most confident rows are labelled first: their accuracy is far above the
        # window's, yet they agree with what the model expects for them
        first = np.argsort(-np.abs(p - 0.5))[:400]
        check = concept_drift(est, p[first], y[first])
        assert accuracy_score(y[first], p[first] >= 0.5) > est.accuracy_high
        flags.append(check.flag)
    assert not any(flags)
    assert "consistent" in check.message


def test_the_exact_accuracy_range_is_scipys_poisson_binomial() -> None:
    q = np.random.default_rng(9).uniform(0.5, 1.0, 40)
    low, high = poisson_binomial_range(q, 0.0025)
    cdf = stats.poisson_binom.cdf(np.arange(41), q)
    assert cdf[low] >= 0.0025 and (low == 0 or cdf[low - 1] < 0.0025)
    sf = 1.0 - np.r_[0.0, cdf[:-1]]  # P(X >= k)
    assert sf[high] >= 0.0025 and (high == 40 or sf[high + 1] < 0.0025)


def test_the_poisson_binomial_pmf_is_scipys_for_thousands_of_trials() -> None:
    q = np.random.default_rng(10).uniform(0.0, 1.0, 3001)
    pmf = poisson_binomial_pmf(q)
    assert pmf.shape == (3002,)
    np.testing.assert_allclose(pmf, stats.poisson_binom.pmf(np.arange(3002), q), atol=1e-12)
    assert pmf.sum() == pytest.approx(1.0, abs=1e-12)


def test_few_early_labels_do_not_raise_false_alarms() -> None:
    """30 labels drawn from the model's own probabilities: the flag stays down in about
    1 - alpha of windows (alpha = 0.01), however small the sample."""
    p = scores(make_churn(30, seed=61))
    est = estimate_performance(p)
    rng = np.random.default_rng(61)
    flags = sum(
        concept_drift(est, p, (rng.random(p.size) < p).astype(int), draws=50, seed=i).flag
        for i in range(300)
    )
    assert flags <= 9  # 3 expected at most; 9 is far in the binomial tail
    # and a clear change is still caught on those 30 rows: every label flipped
    y = (rng.random(p.size) < p).astype(int)
    assert concept_drift(est, p, 1 - y).flag
