"""Performance before the labels arrive: confidence-based performance estimation (CBPE).

For a *calibrated* binary classifier, a row scored p is a positive with probability p. So the
confusion matrix a window will show once its labels arrive is expected to be

    E[TP] = sum of p over rows predicted positive     E[FP] = sum of 1 - p over them
    E[FN] = sum of p over rows predicted negative     E[TN] = sum of 1 - p over them

and every metric follows from it (NannyML's CBPE): accuracy = (E[TP] + E[TN]) / n, precision
= E[TP] / predicted positives, recall = E[TP] / (E[TP] + E[FN]), F1 = 2 E[TP] / (2 E[TP] +
E[FP] + E[FN]). The expected ROC curve sweeps the threshold down the sorted scores, adding p to
the expected true positives and 1 - p to the expected false positives of each score passed;
its area is the estimated ROC AUC (ties form one step, as in scikit-learn).

The intervals answer "where will the realised metric of THESE rows fall, if the model is
calibrated?": labels are y ~ Bernoulli(p), independently. Accuracy and precision are sums of
independent Bernoulli terms over a fixed denominator, so their variance is exact: sum of
q (1 - q) / n^2, q the chance each row is right. Recall, F1 and ROC AUC are ratios, so their
spread comes from `draws` simulated label sets (seeded: the same scores give the same
interval). Each interval is the estimate +- z * sd, z the normal quantile of `confidence`.

The estimate is blind to concept drift: if the link between features and churn changes, the
scores do not, and neither does the estimate. `concept_drift` compares it with the realised
metric on the first labels; `calibration` checks, on held-out labelled data, whether the
model's probabilities can be trusted at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from relevo.errors import InvalidInputError
from relevo.feedback.calibration import (
    Calibration,
    CalibrationBin,
    calibration,
    check_labels,
    check_proba,
)

__all__ = [
    "Calibration",
    "CalibrationBin",
    "ConceptDriftCheck",
    "Estimate",
    "MetricCheck",
    "calibration",
    "concept_drift",
    "estimate_performance",
    "expected_roc_auc",
]

#: label sets simulated at once (memory: this many booleans per row)
_CHUNK = 16


@dataclass(frozen=True)
class Estimate:
    """Estimated metrics of one window, each with the interval of its realised value."""

    rows: int
    threshold: float
    confidence: float
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    precision: float
    precision_low: float
    precision_high: float
    recall: float
    recall_low: float
    recall_high: float
    f1: float
    f1_low: float
    f1_high: float
    roc_auc: float
    roc_auc_low: float
    roc_auc_high: float
    #: expected confusion matrix: true/false positives/negatives (floats)
    tp: float
    fp: float
    fn: float
    tn: float

    def interval(self, metric: str) -> tuple[float, float, float]:
        """(estimate, low, high) of "accuracy", "precision", "recall", "f1" or "roc_auc"."""
        if metric not in METRICS:
            raise InvalidInputError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
        return (
            getattr(self, metric),
            getattr(self, f"{metric}_low"),
            getattr(self, f"{metric}_high"),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe data (NaN as None)."""
        out: dict[str, Any] = {
            "rows": self.rows,
            "threshold": self.threshold,
            "confidence": self.confidence,
        }
        for metric in METRICS:
            value, low, high = self.interval(metric)
            out[metric] = {"estimate": _num(value), "low": _num(low), "high": _num(high)}
        out["confusion"] = {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn}
        return out


METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")


def estimate_performance(
    proba: np.ndarray,
    *,
    threshold: float = 0.5,
    confidence: float = 0.95,
    draws: int = 200,
    seed: int = 0,
) -> Estimate:
    """Estimate a window's metrics from the positive-class probabilities of its rows."""
    from scipy import stats  # imported when needed: the CLI starts faster

    p = check_proba(proba)
    if not 0.0 < threshold <= 1.0:
        raise InvalidInputError(f"threshold must be in (0, 1], got {threshold!r}")
    if not 0.0 < confidence < 1.0:
        raise InvalidInputError(f"confidence must be between 0 and 1, got {confidence!r}")
    if draws < 2:
        raise InvalidInputError(f"draws must be at least 2, got {draws!r}")
    values, sds, confusion = _expected(p, threshold, draws, seed)
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    bounds: dict[str, float] = {}
    for metric in METRICS:
        value, sd = values[metric], sds[metric]
        ok = math.isfinite(value) and math.isfinite(sd)
        bounds[metric] = value
        bounds[f"{metric}_low"] = max(0.0, value - z * sd) if ok else math.nan
        bounds[f"{metric}_high"] = min(1.0, value + z * sd) if ok else math.nan
    tp, fp, fn, tn = confusion
    return Estimate(
        rows=p.size,
        threshold=float(threshold),
        confidence=confidence,
        tp=tp,
        fp=fp,
        fn=fn,
        tn=tn,
        **bounds,
    )


def _expected(
    p: np.ndarray, threshold: float, draws: int, seed: int
) -> tuple[dict[str, float], dict[str, float], tuple[float, float, float, float]]:
    """Expected metrics, the standard deviation of their realised values, and E[confusion]."""
    n = p.size
    pred = p >= threshold
    tp, fn = float(p[pred].sum()), float(p[~pred].sum())
    fp, tn = float(pred.sum()) - tp, float((~pred).sum()) - fn
    right = np.where(pred, p, 1.0 - p)  # the chance each row is classified right
    n_pos = int(pred.sum())
    recall_sd, f1_sd, auc_sd = _simulated_sd(p, pred, draws, seed)
    values = {
        "accuracy": (tp + tn) / n,
        "precision": _ratio(tp, n_pos),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "roc_auc": expected_roc_auc(p),
    }
    sds = {
        "accuracy": math.sqrt(float((right * (1.0 - right)).sum())) / n,
        "precision": _ratio(math.sqrt(float((p[pred] * (1.0 - p[pred])).sum())), n_pos),
        "recall": recall_sd,
        "f1": f1_sd,
        "roc_auc": auc_sd,
    }
    return values, sds, (tp, fp, fn, tn)


def expected_roc_auc(proba: np.ndarray) -> float:
    """Area under the expected ROC curve of calibrated scores (NaN if a class cannot occur)."""
    p = check_proba(proba)
    scores, inverse = np.unique(p, return_inverse=True)
    pos = np.bincount(inverse, weights=p, minlength=scores.size)[::-1]
    neg = np.bincount(inverse, weights=1.0 - p, minlength=scores.size)[::-1]
    total_pos, total_neg = pos.sum(), neg.sum()
    if total_pos <= 0 or total_neg <= 0:
        return math.nan
    tpr = np.concatenate([[0.0], np.cumsum(pos) / total_pos])
    fpr = np.concatenate([[0.0], np.cumsum(neg) / total_neg])
    return float(np.trapezoid(tpr, fpr))


def _simulated_sd(
    p: np.ndarray, pred: np.ndarray, draws: int, seed: int
) -> tuple[float, float, float]:
    """Spread of recall, F1 and ROC AUC over label sets drawn as y ~ Bernoulli(p)."""
    from scipy import stats  # imported when needed: the CLI starts faster

    rng = np.random.default_rng(seed)
    ranks = stats.rankdata(p)  # average ranks: ties count one half, as in ROC AUC
    recall, f1, auc = [], [], []
    done = 0
    while done < draws:
        k = min(_CHUNK, draws - done)
        y = rng.random((k, p.size)) < p
        n_pos = y.sum(axis=1).astype(np.float64)
        n_neg = p.size - n_pos
        tp = (y & pred).sum(axis=1).astype(np.float64)
        fp = float(pred.sum()) - tp
        fn = n_pos - tp
        # ranks are multiples of 1/2 far below 2**52: the product's sums are exact
        rank_sum = y.astype(np.float64) @ ranks
        with np.errstate(invalid="ignore", divide="ignore"):
            recall.append(tp / n_pos)
            f1.append(2 * tp / (2 * tp + fp + fn))
            auc.append((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
        done += k
    return tuple(_nan_sd(np.concatenate(values)) for values in (recall, f1, auc))  # type: ignore[return-value]


def _nan_sd(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.std(ddof=1)) if finite.size >= 2 else math.nan


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


@dataclass(frozen=True)
class MetricCheck:
    """One metric of a concept-drift check: realised on the labelled rows vs expected there."""

    metric: str
    expected: float
    low: float
    high: float
    realised: float
    z: float

    @property
    def outside(self) -> bool:
        return bool(self.realised < self.low or self.realised > self.high)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "expected": _num(self.expected),
            "low": _num(self.low),
            "high": _num(self.high),
            "realised": _num(self.realised),
            "z": _num(self.z),
            "outside": self.outside,
        }


@dataclass(frozen=True)
class ConceptDriftCheck:
    """Whether early labels contradict the estimate: `flag` is True when they do."""

    flag: bool
    message: str
    rows: int
    alpha: float
    checks: tuple[MetricCheck, ...]
    #: the window's estimate the check was made for (all its rows, labelled or not)
    window_accuracy: float
    window_roc_auc: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "flag": self.flag,
            "message": self.message,
            "rows": self.rows,
            "alpha": self.alpha,
            "window_accuracy": _num(self.window_accuracy),
            "window_roc_auc": _num(self.window_roc_auc),
            "checks": [c.to_dict() for c in self.checks],
        }


CONCEPT_DRIFT_MESSAGE = "estimate no longer valid: likely concept drift"
#: up to this many labelled rows the accuracy interval is exact (Poisson-binomial), not normal
EXACT_ROWS = 5000


def poisson_binomial_range(q: np.ndarray, tail: float) -> tuple[int, int]:
    """The counts k with P(X <= k) >= tail and P(X >= k) >= tail, X the number of successes
    of independent trials with chances `q` (its pmf by convolution, one trial at a time)."""
    pmf = poisson_binomial_pmf(q)
    cdf = np.cumsum(pmf)
    sf = np.cumsum(pmf[::-1])[::-1]  # P(X >= k)
    return int(np.argmax(cdf >= tail)), int(np.flatnonzero(sf >= tail)[-1])


def poisson_binomial_pmf(q: np.ndarray) -> np.ndarray:
    """P(X = k) for k = 0..n, X the number of successes of independent trials with chances
    `q`: the trials cut into about sqrt(n) blocks, each block's pmf built one trial at a time
    (all blocks at once), then the blocks' pmfs convolved pairwise. Every term is a sum of
    products of non-negative numbers, so it is as accurate as the one-trial-at-a-time
    recurrence, in a few dozen array operations instead of n."""
    q = np.asarray(q, dtype=np.float64)
    n = q.size
    if n == 0:
        return np.ones(1)
    size = max(1, math.isqrt(n))
    blocks = -(-n // size)
    padded = np.zeros(blocks * size)  # padding: trials with chance 0 change nothing
    padded[:n] = q
    chances = padded.reshape(blocks, size)
    pmf = np.zeros((blocks, size + 1))
    pmf[:, 0] = 1.0
    for k in range(size):
        c = chances[:, k : k + 1]
        moved = pmf[:, : k + 1] * c
        pmf[:, : k + 2] *= 1.0 - c
        pmf[:, 1 : k + 2] += moved
    parts = list(pmf)
    while len(parts) > 1:
        paired = [np.convolve(a, b) for a, b in zip(parts[::2], parts[1::2], strict=False)]
        parts = paired + ([parts[-1]] if len(parts) % 2 else [])
    return parts[0][: n + 1]


def concept_drift(
    estimate: Estimate,
    proba: Any,
    y: Any,
    *,
    alpha: float = 0.01,
    draws: int = 200,
    seed: int = 0,
) -> ConceptDriftCheck:
    """Compare a window's estimate with the realised metrics on its first labels.

    `proba` and `y` are the labelled rows of the window (their scores and labels). Labels that
    arrive first are often not a random sample of the window, so each realised metric is
    compared with what the estimate expects FOR THOSE ROWS, and the interval is the one of
    that many labels: y ~ Bernoulli(p) on them, at level 1 - alpha / 2 for each of accuracy
    and ROC AUC (Bonferroni); exact for accuracy up to `EXACT_ROWS` labels (the count of
    right answers is Poisson-binomial), normal beyond and for ROC AUC (simulated spread).
    A realised metric outside its interval raises the flag: the scores no longer say how often
    customers churn, which a calibrated model on unchanged data does by chance at most about
    `alpha` of the time.
    """
    from scipy import stats  # imported when needed: the CLI starts faster

    p = check_proba(proba)
    labels = check_labels(y, p.size)
    if not 0.0 < alpha < 1.0:
        raise InvalidInputError(f"alpha must be between 0 and 1, got {alpha!r}")
    values, sds, _ = _expected(p, estimate.threshold, draws, seed)
    z_crit = float(stats.norm.ppf(1.0 - alpha / 4))  # two metrics, two-sided
    pred = p >= estimate.threshold
    realised = {"accuracy": float(np.mean(pred == labels)), "roc_auc": _roc_auc(p, labels)}
    checks = []
    for metric in ("accuracy", "roc_auc"):
        value, sd, seen = values[metric], sds[metric], realised[metric]
        if not (math.isfinite(value) and math.isfinite(sd) and math.isfinite(seen)):
            continue  # e.g. ROC AUC of labels of one class only
        z = (seen - value) / sd if sd > 0 else (0.0 if seen == value else math.inf)
        low, high = value - z_crit * sd, value + z_crit * sd
        if metric == "accuracy" and p.size <= EXACT_ROWS:
            # few labels: the number right is Poisson-binomial; take its exact quantiles
            right = np.where(pred, p, 1.0 - p)
            low, high = (k / p.size for k in poisson_binomial_range(right, alpha / 4))
        checks.append(MetricCheck(metric, value, low, high, seen, z))
    flag = any(c.outside for c in checks)
    return ConceptDriftCheck(
        flag,
        _drift_message(flag, checks, p.size),
        p.size,
        alpha,
        tuple(checks),
        estimate.accuracy,
        estimate.roc_auc,
    )


def _drift_message(flag: bool, checks: list[MetricCheck], n: int) -> str:
    parts = [
        f"{c.metric} {c.realised:.3f} realised vs {c.expected:.3f} expected "
        f"({c.low:.3f} to {c.high:.3f})"
        for c in checks
    ]
    detail = "; ".join(parts) if parts else "no metric could be compared"
    if flag:
        return f"{CONCEPT_DRIFT_MESSAGE} ({detail}, on {n:,} labelled rows)"
    return f"estimate consistent with {n:,} labelled rows ({detail})"


def _roc_auc(p: np.ndarray, labels: np.ndarray) -> float:
    from scipy import stats  # imported when needed: the CLI starts faster

    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    rank_sum = float(stats.rankdata(p)[labels].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
