"""Calibration: can a classifier's probabilities be read as chances, so that CBPE means anything?

`calibration(proba, y)` takes a held-out labelled reference (NOT the training data, on which
almost every model looks calibrated, or over-confident) and measures the expected calibration
error: the scores are cut into `bins` equal-width bins on [0, 1] (as scikit-learn's
`calibration_curve` does), and ECE = sum over bins of (rows in bin / rows) * |mean score -
observed positive rate|. The estimate is called meaningful when ECE <= `max_ece` (0.05 by
default: on average the scores are off by under five points of probability).

Even a perfectly calibrated model shows some ECE on a finite sample; `ece_noise` is that floor
(the mean ECE of `draws` label sets drawn as y ~ Bernoulli(score), seeded), and the note says
when the reference is too small to judge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from relevo.errors import InvalidInputError

__all__ = ["Calibration", "CalibrationBin", "calibration", "check_labels", "check_proba"]


@dataclass(frozen=True)
class CalibrationBin:
    """One bin of the calibration table: scores in [low, high) ([low, 1] for the last)."""

    low: float
    high: float
    rows: int
    mean_proba: float
    observed_rate: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "low": self.low,
            "high": self.high,
            "rows": self.rows,
            "mean_proba": _num(self.mean_proba),
            "observed_rate": _num(self.observed_rate),
        }


@dataclass(frozen=True)
class Calibration:
    """Whether a model's probabilities are calibrated enough for performance estimation."""

    ece: float
    ok: bool
    note: str
    table: list[CalibrationBin]
    rows: int
    max_ece: float
    #: the ECE a perfectly calibrated model would show on this many rows, from noise alone
    ece_noise: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "ece": self.ece,
            "ok": self.ok,
            "note": self.note,
            "rows": self.rows,
            "max_ece": self.max_ece,
            "ece_noise": self.ece_noise,
            "table": [b.to_dict() for b in self.table],
        }


def calibration(
    proba: Any,
    y: Any,
    *,
    bins: int = 10,
    max_ece: float = 0.05,
    draws: int = 200,
    seed: int = 0,
) -> Calibration:
    """Check the calibration of `proba` against the labels `y` of held-out reference rows."""
    p = check_proba(proba)
    labels = check_labels(y, p.size).astype(np.float64)
    if bins < 1:
        raise InvalidInputError(f"bins must be at least 1, got {bins!r}")
    if not 0.0 < max_ece < 1.0:
        raise InvalidInputError(f"max_ece must be between 0 and 1, got {max_ece!r}")
    edges = np.linspace(0.0, 1.0, bins + 1)
    ids = np.searchsorted(edges[1:-1], p)  # scikit-learn's calibration_curve binning
    rows = np.bincount(ids, minlength=bins)
    score_sum = np.bincount(ids, weights=p, minlength=bins)
    ece = _ece(ids, rows, score_sum, labels, bins)
    rng = np.random.default_rng(seed)
    noise = float(
        np.mean(
            [
                _ece(ids, rows, score_sum, (rng.random(p.size) < p).astype(np.float64), bins)
                for _ in range(max(draws, 1))
            ]
        )
    )
    positives = np.bincount(ids, weights=labels, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_proba, observed = score_sum / rows, positives / rows
    table = [
        CalibrationBin(
            float(edges[i]),
            float(edges[i + 1]),
            int(rows[i]),
            float(mean_proba[i]),
            float(observed[i]),
        )
        for i in range(bins)
    ]
    ok = ece <= max_ece
    return Calibration(
        ece, ok, _note(ece, ok, max_ece, noise, p.size), table, p.size, max_ece, noise
    )


def _ece(
    ids: np.ndarray, rows: np.ndarray, score_sum: np.ndarray, labels: np.ndarray, bins: int
) -> float:
    positives = np.bincount(ids, weights=labels, minlength=bins)
    return float(np.abs(score_sum - positives).sum() / rows.sum())


def _note(ece: float, ok: bool, max_ece: float, noise: float, n: int) -> str:
    measured = f"ECE {ece:.3f} on {n:,} held-out rows"
    if ok:
        return (
            f"calibrated: {measured} (limit {max_ece:.3f}); the performance estimate is meaningful"
        )
    if noise > max_ece:
        return (
            f"cannot tell: {measured} is over the limit {max_ece:.3f}, but a calibrated model "
            f"would show {noise:.3f} on so few rows; check on a larger held-out reference"
        )
    return (
        f"not calibrated: {measured} is over the limit {max_ece:.3f} (noise alone gives "
        f"{noise:.3f}); the performance estimate is not meaningful until the model is "
        "recalibrated on held-out data (e.g. scikit-learn's CalibratedClassifierCV)"
    )


def check_proba(proba: Any) -> np.ndarray:
    """Positive-class probabilities as a float array (InvalidInputError naming a bad row)."""
    try:
        p = np.asarray(proba, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"proba must be numbers: {exc}") from None
    if p.ndim == 2 and p.shape[1] == 2:
        p = p[:, 1]  # predict_proba's two columns: the positive class is the second
    if p.ndim != 1:
        raise InvalidInputError(f"proba must be one-dimensional, got shape {p.shape}")
    if p.size == 0:
        raise InvalidInputError("proba is empty: there are no rows")
    bad = np.flatnonzero(~((p >= 0.0) & (p <= 1.0)))  # NaN fails both comparisons
    if bad.size:
        raise InvalidInputError(
            f"proba must be probabilities in [0, 1]: row {int(bad[0])} is {float(p[bad[0]])!r} "
            f"({bad.size} such rows)"
        )
    return p


def check_labels(y: Any, n: int) -> np.ndarray:
    """0/1 or boolean labels, one per probability, as a boolean array."""
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.size != n:
        raise InvalidInputError(
            f"y must hold one label per probability ({n}), got shape {arr.shape}"
        )
    try:
        values = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError("y must hold 0/1 (or boolean) labels") from None
    bad = np.flatnonzero((values != 0.0) & (values != 1.0))
    if bad.size:
        raise InvalidInputError(
            f"y must hold 0/1 labels: row {int(bad[0])} is {arr[bad[0]].item()!r}"
        )
    return values.astype(bool)


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
