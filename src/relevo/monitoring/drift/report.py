"""What a drift comparison found: `FeatureDrift` per column and the `DriftReport` of a whole
window (features, the model's output, the multivariate reconstruction error)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from relevo.monitoring.drift.config import P_VALUE_METHODS
from relevo.monitoring.numeric import encode_float


@dataclass(frozen=True)
class FeatureDrift:
    """The test of one column: which, its statistic against its threshold, and the verdict.

    For a p-value test ("ks", "chisquare") `threshold` is the significance level after the
    correction for the number of features tested, and the column drifted when `p_value` is
    under it; for a distance it drifted when `statistic` reaches `threshold`. A column with
    too few values (`evaluable` False, `note` says why) never counts as drifted.
    `bins`, `reference_shares` and `current_shares` are the two distributions side by side
    (reference bins or categories), for plots.
    """

    feature: str
    kind: str  # "numeric" or "categorical"
    method: str
    statistic: float | None
    threshold: float
    drifted: bool
    p_value: float | None = None
    evaluable: bool = True
    note: str = ""
    reference_rows: int = 0
    current_rows: int = 0
    bins: tuple[str, ...] = ()
    reference_shares: tuple[float, ...] = ()
    current_shares: tuple[float, ...] = ()

    @property
    def is_p_value(self) -> bool:
        return self.method in P_VALUE_METHODS

    @property
    def score(self) -> float | None:
        """The number judged against the threshold: the p-value of a test, else the
        statistic."""
        return self.p_value if self.is_p_value else self.statistic

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "kind": self.kind,
            "method": self.method,
            "statistic": _num(self.statistic),
            "p_value": _num(self.p_value),
            "threshold": _num(self.threshold),
            "drifted": self.drifted,
            "evaluable": self.evaluable,
            "note": self.note,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "distribution": {
                "bins": list(self.bins),
                "reference": [round(s, 6) for s in self.reference_shares],
                "current": [round(s, 6) for s in self.current_shares],
            },
        }


@dataclass(frozen=True)
class DriftReport:
    """Drift of a current window against a baseline (the reference, the previous window or
    the same hours a week earlier)."""

    features: tuple[FeatureDrift, ...]
    prediction: FeatureDrift | None = None
    multivariate: FeatureDrift | None = None
    #: dataset drift when at least this share of the evaluable features drifted
    dataset_share: float = 0.5
    reference_rows: int = 0
    current_rows: int = 0
    baseline: str = "reference"
    deployment: str | None = None
    model: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def feature(self, name: str) -> FeatureDrift:
        for f in self.features:
            if f.feature == name:
                return f
        raise KeyError(name)

    @property
    def evaluable_features(self) -> tuple[FeatureDrift, ...]:
        return tuple(f for f in self.features if f.evaluable)

    @property
    def drifted_features(self) -> list[str]:
        """Names of the features that drifted, in report order."""
        return [f.feature for f in self.features if f.drifted]

    @property
    def drifted_share(self) -> float:
        """Share of the evaluable features that drifted (NaN when none is evaluable)."""
        judged = self.evaluable_features
        return len(self.drifted_features) / len(judged) if judged else math.nan

    @property
    def dataset_drift(self) -> bool:
        share = self.drifted_share
        return not math.isnan(share) and share >= self.dataset_share

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "model": self.model,
            "baseline": self.baseline,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "dataset_drift": self.dataset_drift,
            "drifted_share": _num(self.drifted_share),
            "dataset_share": self.dataset_share,
            "drifted_features": self.drifted_features,
            "features": [f.to_dict() for f in self.features],
            "prediction": self.prediction.to_dict() if self.prediction else None,
            "multivariate": self.multivariate.to_dict() if self.multivariate else None,
            "config": self.config,
        }

    def to_html(self, title: str | None = None) -> str:
        """A self-contained HTML page (inline SVG plots, no script, no external resource)."""
        from relevo.monitoring.drift.html import render

        return render(self, title)


def _num(value: float | None) -> float | str | None:
    return None if value is None else encode_float(value)
