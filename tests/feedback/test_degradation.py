"""Degradation trend: weighted least squares of a metric on time, checked against SciPy/NumPy."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import stats

from relevo.errors import InvalidInputError
from relevo.feedback.degradation import MetricPoint, trend

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def daily(
    values: list[float], counts: list[int] | None = None, half: float = 0.01
) -> list[MetricPoint]:
    counts = counts or [1000] * len(values)
    return [
        MetricPoint(T0 + timedelta(days=i), v, c, v - half, v + half)
        for i, (v, c) in enumerate(zip(values, counts, strict=True))
    ]


def test_equal_weights_match_scipy_linregress() -> None:
    rng = np.random.default_rng(1)
    values = list(0.85 - 0.002 * np.arange(20) + rng.normal(0, 0.004, 20))
    result = trend(daily(values), threshold=None, higher_is_better=True, weights="count")
    fit = stats.linregress(np.arange(20) / 7.0, values)
    assert result.rate_per_week == pytest.approx(fit.slope, rel=1e-9)
    t = stats.t.ppf(0.975, 18)
    assert result.rate_low == pytest.approx(fit.slope - t * fit.stderr, rel=1e-9)
    assert result.rate_high == pytest.approx(fit.slope + t * fit.stderr, rel=1e-9)
    assert result.fitted_last == pytest.approx(fit.intercept + fit.slope * 19 / 7, rel=1e-9)
    assert result.points == 20 and result.significant and result.status == "no_threshold"


def test_weights_match_numpy_polyfit_with_scaled_covariance() -> None:
    rng = np.random.default_rng(2)
    counts = list(rng.integers(50, 5000, 15))
    values = list(0.9 - 0.001 * np.arange(15) + rng.normal(0, 0.05, 15) / np.sqrt(counts))
    result = trend(daily(values, counts), threshold=None, higher_is_better=True, weights="count")
    x = np.arange(15) / 7.0
    # polyfit's w multiplies residuals, so sqrt(count) weighs squared residuals by count;
    # cov=True scales by the weighted residual variance on n - 2 degrees of freedom
    coef, cov = np.polyfit(x, values, 1, w=np.sqrt(counts), cov=True)
    assert result.rate_per_week == pytest.approx(coef[0], rel=1e-9)
    half = stats.t.ppf(0.975, 13) * math.sqrt(cov[0, 0])
    assert result.rate_high - result.rate_per_week == pytest.approx(half, rel=1e-9)
    assert result.weights == "count"


def test_interval_weights_are_inverse_variances() -> None:
    rng = np.random.default_rng(3)
    half = rng.uniform(0.005, 0.05, 12)
    values = list(0.8 - 0.003 * np.arange(12) + rng.normal(0, 0.01, 12))
    points = [
        MetricPoint(T0 + timedelta(days=i), v, 100, v - h, v + h)
        for i, (v, h) in enumerate(zip(values, half, strict=True))
    ]
    result = trend(points, threshold=None, higher_is_better=True)  # auto: intervals
    se = half / stats.norm.ppf(0.975)
    coef = np.polyfit(np.arange(12) / 7.0, values, 1, w=1 / se)
    assert result.weights == "interval"
    assert result.rate_per_week == pytest.approx(coef[0], rel=1e-9)


def test_recovers_a_known_slope_within_its_interval_at_about_the_stated_rate() -> None:
    slope_per_day = -0.004
    covered = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        values = list(0.9 + slope_per_day * np.arange(10) + rng.normal(0, 0.01, 10))
        result = trend(daily(values), threshold=None, higher_is_better=True)
        covered += result.rate_low <= slope_per_day * 7 <= result.rate_high
    # 95 % intervals: 190 of 200 expected; a binomial 99.9 % range is about 180..198
    assert 178 <= covered <= 199


def test_time_to_threshold_from_the_last_fitted_value() -> None:
    values = [0.90 - 0.01 * i for i in range(8)]  # exactly 0.07 per week, last value 0.83
    result = trend(daily(values, half=0.0), threshold=0.75, higher_is_better=True)
    assert result.status == "heading"
    assert result.rate_per_week == pytest.approx(-0.07)
    second = timedelta(seconds=1)
    assert result.time_to_threshold == pytest.approx(timedelta(days=8), abs=second)
    assert result.crossing_at == pytest.approx(T0 + timedelta(days=15), abs=second)
    data = result.to_dict()
    assert data["time_to_threshold_seconds"] == pytest.approx(8 * 86400)
    assert data["status"] == "heading"


def test_statuses_when_not_heading_or_already_past() -> None:
    rising = daily([0.80 + 0.01 * i for i in range(6)])
    assert trend(rising, threshold=0.75, higher_is_better=True).status == "not_heading"
    assert trend(rising, threshold=0.75, higher_is_better=True).time_to_threshold is None
    past = daily([0.74 - 0.01 * i for i in range(6)])
    result = trend(past, threshold=0.75, higher_is_better=True)
    assert result.status == "crossed" and result.time_to_threshold is None
    # a loss (lower is better) rising towards its ceiling
    loss = daily([0.30 + 0.01 * i for i in range(6)])
    result = trend(loss, threshold=0.40, higher_is_better=False)
    assert result.status == "heading"
    assert result.time_to_threshold == pytest.approx(timedelta(days=5), abs=timedelta(seconds=1))


def test_empty_windows_are_skipped_and_too_few_points_say_so() -> None:
    points = daily([0.9, 0.88])
    points.append(MetricPoint(T0 + timedelta(days=5), math.nan, 0, math.nan, math.nan))
    result = trend(points, threshold=0.8, higher_is_better=True)
    assert result.points == 2
    assert result.rate_per_week == pytest.approx(-0.14)
    assert math.isnan(result.rate_low)
    assert trend(daily([0.9]), threshold=0.8, higher_is_better=True).status == "too_few_points"
    assert trend([], threshold=0.8, higher_is_better=True).to_dict()["rate_per_week"] is None


def test_bad_input_is_refused_with_the_field_named() -> None:
    naive = [MetricPoint(datetime(2026, 11, 2), 0.9, 10, 0.8, 1.0)]
    with pytest.raises(InvalidInputError, match="timezone"):
        trend(daily([0.9]) + naive, threshold=None, higher_is_better=True)
    with pytest.raises(InvalidInputError, match="confidence"):
        trend(daily([0.9, 0.8]), threshold=None, higher_is_better=True, confidence=1.5)
    with pytest.raises(InvalidInputError, match="interval"):
        trend(
            daily([0.9, 0.8], half=0.0), threshold=None, higher_is_better=True, weights="interval"
        )
