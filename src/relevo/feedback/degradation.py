"""Degradation: the trend of a metric across time windows, its rate and the time to a threshold.

`trend(points, threshold=..., higher_is_better=...)` fits the metric's value against time by
weighted least squares (one point per window; a window measured on more rows, or with a
narrower confidence interval, weighs more), and answers:

* `rate_per_week`: the fitted change of the metric per week (ROC AUC points lost per week is
  `-rate_per_week`), with a confidence interval from the t distribution on n - 2 degrees of
  freedom; the residual scatter sets the scale (as statsmodels' WLS does), so windows that
  disagree more than their weights say widen the interval instead of being trusted;
* `time_to_threshold`: from the fitted value at the last window, how long until the fitted line
  crosses the business threshold at the fitted rate. None, with `status` saying why, when the
  metric is not heading there ("not_heading"), is already past it ("crossed"), there is no
  threshold ("no_threshold") or too few windows ("too_few_points").

The fit assumes a straight line over the windows given: pass the recent windows whose
degradation you want to extrapolate, not a whole history with a step in it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np

from relevo.errors import InvalidInputError

__all__ = ["MetricPoint", "Trend", "trend"]

WEEK = timedelta(weeks=1)
Weights = Literal["auto", "count", "interval"]


@dataclass(frozen=True)
class MetricPoint:
    """A metric measured on one window: its start, value, row count and confidence interval."""

    start: datetime
    value: float
    count: int
    low: float
    high: float


@dataclass(frozen=True)
class Trend:
    """The fitted trend of a metric (see the module docstring for each field's meaning)."""

    rate_per_week: float
    rate_low: float
    rate_high: float
    time_to_threshold: timedelta | None
    points: int
    status: str
    significant: bool
    fitted_last: float
    threshold: float | None
    higher_is_better: bool
    confidence: float
    weights: str
    #: the earliest crossing the rate's interval allows (None when it allows none)
    time_to_threshold_earliest: timedelta | None
    last_start: datetime | None

    @property
    def crossing_at(self) -> datetime | None:
        """When the fitted line crosses the threshold, if it is heading there."""
        if self.time_to_threshold is None or self.last_start is None:
            return None
        return self.last_start + self.time_to_threshold

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe data: non-finite numbers as None, durations in seconds, times ISO 8601."""
        return {
            "rate_per_week": _num(self.rate_per_week),
            "rate_low": _num(self.rate_low),
            "rate_high": _num(self.rate_high),
            "significant": self.significant,
            "confidence": self.confidence,
            "points": self.points,
            "weights": self.weights,
            "fitted_last": _num(self.fitted_last),
            "threshold": self.threshold,
            "higher_is_better": self.higher_is_better,
            "status": self.status,
            "time_to_threshold_seconds": _seconds(self.time_to_threshold),
            "time_to_threshold_earliest_seconds": _seconds(self.time_to_threshold_earliest),
            "crossing_at": None if self.crossing_at is None else self.crossing_at.isoformat(),
        }


def trend(
    points: Sequence[MetricPoint],
    *,
    threshold: float | None,
    higher_is_better: bool,
    weights: Weights = "auto",
    confidence: float = 0.95,
) -> Trend:
    """Fit the metric's trend over `points` (windows in any order; empty windows skipped).

    `weights`: "count" weighs each window by its rows; "interval" by 1 / se^2 with se the
    half-width of its interval over the normal quantile of `confidence`; "auto" uses the
    intervals when every window has a finite, non-empty one and the counts otherwise.
    """
    from scipy import stats  # imported when needed: the CLI starts faster

    if not 0.0 < confidence < 1.0:
        raise InvalidInputError(f"confidence must be between 0 and 1, got {confidence!r}")
    if weights not in ("auto", "count", "interval"):
        raise InvalidInputError(f"weights must be auto, count or interval, got {weights!r}")
    if threshold is not None and not math.isfinite(threshold):
        raise InvalidInputError(f"threshold must be a finite number, got {threshold!r}")
    used = [p for p in points if p.count > 0 and math.isfinite(p.value)]
    if len({p.start.tzinfo is None for p in used}) > 1:
        raise InvalidInputError("window starts must all be timezone-aware or all naive")
    used.sort(key=lambda p: p.start)
    x = _weeks(used)
    y = np.array([p.value for p in used], dtype=np.float64)
    w, kind = _weights(used, weights, confidence)
    n = len(used)
    last_start = used[-1].start if used else None
    empty = Trend(
        math.nan,
        math.nan,
        math.nan,
        None,
        n,
        "too_few_points",
        False,
        math.nan,
        threshold,
        higher_is_better,
        confidence,
        kind,
        None,
        last_start,
    )
    if n < 2 or np.ptp(x) == 0.0:
        return empty
    sw = w.sum()
    x_mean, y_mean = (w @ x) / sw, (w @ y) / sw
    sxx = w @ (x - x_mean) ** 2
    slope = float((w @ ((x - x_mean) * (y - y_mean))) / sxx)
    fitted_last = float(y_mean + slope * (x[-1] - x_mean))
    if n < 3:
        low = high = math.nan
    else:
        residuals = y - (y_mean + slope * (x - x_mean))
        scale = float(w @ residuals**2) / (n - 2)
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 2)) * math.sqrt(scale / sxx)
        low, high = slope - half, slope + half
    significant = bool(low > 0.0 or high < 0.0)
    status, ttt, earliest = _time_to_threshold(
        fitted_last, slope, (low, high), threshold, higher_is_better
    )
    return Trend(
        slope,
        low,
        high,
        ttt,
        n,
        status,
        significant,
        fitted_last,
        threshold,
        higher_is_better,
        confidence,
        kind,
        earliest,
        last_start,
    )


def _weeks(points: Sequence[MetricPoint]) -> np.ndarray:
    if not points:
        return np.empty(0)
    first = points[0].start
    try:
        return np.array([(p.start - first) / WEEK for p in points], dtype=np.float64)
    except TypeError as exc:  # naive and aware datetimes mixed
        raise InvalidInputError(
            f"window starts must all be timezone-aware or all naive: {exc}"
        ) from None


def _weights(
    points: Sequence[MetricPoint], mode: Weights, confidence: float
) -> tuple[np.ndarray, str]:
    from scipy import stats  # imported when needed: the CLI starts faster

    counts = np.array([p.count for p in points], dtype=np.float64)
    half = np.array([(p.high - p.low) / 2 for p in points], dtype=np.float64)
    usable = bool(points) and bool(np.all(np.isfinite(half) & (half > 0)))
    if mode == "interval" and not usable:
        raise InvalidInputError("weights='interval' needs a finite, non-empty interval per window")
    if mode == "count" or (mode == "auto" and not usable):
        return counts, "count"
    se = half / float(stats.norm.ppf(0.5 + confidence / 2))
    return 1.0 / se**2, "interval"


def _time_to_threshold(
    fitted_last: float,
    slope: float,
    interval: tuple[float, float],
    threshold: float | None,
    higher_is_better: bool,
) -> tuple[str, timedelta | None, timedelta | None]:
    """Status, time at the fitted rate and earliest time at the interval's worst rate."""
    if threshold is None:
        return "no_threshold", None, None
    # Work in "distance left before the threshold" and "speed towards it", both > 0 when
    # the metric is still on the good side and heading to the threshold.
    sign = 1.0 if higher_is_better else -1.0
    left = sign * (fitted_last - threshold)
    if left <= 0.0:
        return "crossed", None, None
    toward = -sign * slope
    worst = max(-sign * interval[0], -sign * interval[1])
    earliest = _weeks_to_delta(left / worst) if math.isfinite(worst) and worst > 0 else None
    at_rate = _weeks_to_delta(left / toward) if toward > 0.0 else None
    if at_rate is None:
        return "not_heading", None, earliest
    return "heading", at_rate, earliest


def crossing_words(trend: Mapping[str, Any], now: datetime) -> str:
    """How a trend (`Trend.to_dict()`) meets its threshold, counted from `now` (the fit counts
    from its last window, often a week old when labels take a week): "threshold in 2.9 days
    (2026-12-05)", "the fitted line crossed the threshold on 2026-11-27" when that time is
    past, "threshold crossed" when the last window is past it, else ""."""
    if trend.get("status") == "crossed":
        return "threshold crossed"
    at = trend.get("crossing_at")
    if trend.get("status") != "heading" or not at:
        return ""
    when = datetime.fromisoformat(at)
    if when <= now:
        return f"the fitted line crossed the threshold on {when:%Y-%m-%d}"
    return f"threshold in {(when - now).total_seconds() / 86400:.1f} days ({when:%Y-%m-%d})"


def _weeks_to_delta(weeks: float) -> timedelta | None:
    # timedelta tops out near 2.7 million years: a crossing further away is "never" in practice
    return WEEK * weeks if weeks < 1e8 else None


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _seconds(d: timedelta | None) -> float | None:
    return None if d is None else d.total_seconds()
