"""The values a performance report is made of: per model and role, per window of prediction
time, metrics with counts and intervals, coverage, label delay and maturity."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from relevo.feedback.metrics import Metric


@dataclass(frozen=True)
class FeedbackConfig:
    """A deployment's feedback settings: when a window is mature, and its business thresholds.

    A window is **mature** once `label_delay_days` have passed since its end, or earlier once
    `min_coverage` of its predictions are labelled; it is judged (metrics compared with
    thresholds) only when mature and with at least `min_labels` labelled rows.
    """

    label_delay_days: float
    min_coverage: float
    min_labels: int
    #: metric -> the least (or, for losses, the most) acceptable value
    thresholds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label_delay_days": self.label_delay_days,
            "min_coverage": self.min_coverage,
            "min_labels": self.min_labels,
            "thresholds": dict(self.thresholds),
        }


@dataclass(frozen=True)
class WindowPerformance:
    """One window of prediction time for one model in one role."""

    start: datetime
    end: datetime
    rows: int
    labelled: int
    #: median hours from prediction to label, over the labelled rows
    label_delay_hours: float | None
    mature: bool
    metrics: dict[str, Metric]
    calibration: list[dict[str, Any]] = field(default_factory=list)
    #: the metrics estimated from the probabilities alone (before labels), where meaningful
    estimate: dict[str, Any] | None = None
    #: the estimate disagrees with the realised metric on early labels: likely concept drift
    concept_drift: bool = False

    @property
    def coverage(self) -> float:
        return self.labelled / self.rows if self.rows else 0.0

    def estimated(self, metric: str) -> float | None:
        """The metric as estimated from the probabilities alone (None: not estimated)."""
        found = (self.estimate or {}).get(metric)
        return found.get("estimate") if isinstance(found, dict) else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "rows": self.rows,
            "labelled": self.labelled,
            "coverage": self.coverage,
            "label_delay_hours": self.label_delay_hours,
            "mature": self.mature,
            "metrics": {k: m.to_dict() for k, m in self.metrics.items()},
            "calibration": self.calibration,
            "estimate": self.estimate,
            "concept_drift": self.concept_drift,
        }


@dataclass(frozen=True)
class ModelPerformance:
    """A model in a role (champion, challenger, shadow) over the report's windows."""

    model: str
    role: str
    rows: int
    labelled: int
    #: over every labelled row of the report's range
    overall: dict[str, Metric]
    windows: list[WindowPerformance]
    #: metric -> its trend across mature windows (`degradation.Trend.to_dict()`)
    trends: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the worst segments (`segments.Segment.to_dict()`), when asked for
    segments: list[dict[str, Any]] | None = None
    #: whether the probabilities are calibrated enough for the estimate to mean something
    calibration_check: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "role": self.role,
            "rows": self.rows,
            "labelled": self.labelled,
            "coverage": self.labelled / self.rows if self.rows else 0.0,
            "overall": {k: m.to_dict() for k, m in self.overall.items()},
            "windows": [w.to_dict() for w in self.windows],
            "trends": self.trends,
            "segments": self.segments,
            "calibration_check": self.calibration_check,
        }


@dataclass(frozen=True)
class ThresholdCheck:
    """A business threshold against the champion's latest mature window."""

    metric: str
    threshold: float
    higher_is_better: bool
    value: float | None
    window_start: datetime | None
    #: None: no mature window with enough labels to judge
    breached: bool | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "threshold": self.threshold,
            "direction": ">=" if self.higher_is_better else "<=",
            "value": self.value,
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "breached": self.breached,
        }


@dataclass(frozen=True)
class PerformanceReport:
    deployment: str
    task: str
    window: str
    since: datetime | None
    until: datetime
    config: FeedbackConfig
    models: list[ModelPerformance]
    thresholds: list[ThresholdCheck]
    #: NAME:VERSION of the deployment's champion when the report was made
    champion_ref: str | None = None

    @property
    def champion(self) -> ModelPerformance | None:
        """The current champion's performance (None if it answered nothing in the range)."""
        return champion_of(self.models, self.champion_ref)

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "task": self.task,
            "window": self.window,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat(),
            "settings": self.config.to_dict(),
            "models": [m.to_dict() for m in self.models],
            "thresholds": [t.to_dict() for t in self.thresholds],
            "champion": self.champion_ref,
        }

    def to_html(self) -> str:
        from relevo.feedback.html import render

        return render(self)


def champion_of(models: list[ModelPerformance], ref: str | None) -> ModelPerformance | None:
    """The champion role of model `ref` (any champion when `ref` is None)."""
    return next(
        (m for m in models if m.role == "champion" and (ref is None or m.model == ref)), None
    )
