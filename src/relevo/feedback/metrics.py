"""Performance metrics on labelled rows, each with its count and a 95 % confidence interval.

The values equal scikit-learn's on the same rows (checked in the tests to 1e-9). The intervals:

- accuracy, precision, recall: the Wilson score interval of the proportion (over all rows,
  the predicted positives, the actual positives);
- F1 and multiclass macro precision/recall/F1: a bootstrap of 1,000 multinomial resamples of
  the confusion matrix (the same as resampling rows, at the cost of a few cells), percentiles;
- ROC AUC: the Hanley & McNeil (1982) standard error, a normal interval; for a multiclass
  model the one-vs-rest macro average (as scikit-learn's `multi_class="ovr"`), its standard
  error taken as that of a mean of independent per-class AUCs (an approximation: the classes'
  AUCs are correlated);
- log loss, Brier, MAE: the mean of the per-row losses +- 1.96 standard errors;
- RMSE: the square root of the MSE's normal interval;
- R²: a bootstrap of 200 Poisson-weighted resamples of (at most 100,000) rows, percentiles.

Every bootstrap is seeded: the same rows give the same interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

Z = 1.959963984540054  # the 97.5 % normal quantile
_SEED = 20261130


@dataclass(frozen=True)
class Metric:
    """A metric's value on `count` labelled rows, with its 95 % interval (None: undefined)."""

    name: str
    value: float | None
    count: int
    low: float | None
    high: float | None
    higher_is_better: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "count": self.count,
            "low": self.low,
            "high": self.high,
        }


#: which metrics improve upwards (for thresholds and trends)
HIGHER_IS_BETTER = {
    "accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "roc_auc": True,
    "log_loss": False,
    "brier": False,
    "mae": False,
    "rmse": False,
    "r2": True,
}


def _metric(
    name: str, value: float | None, n: int, low: float | None, high: float | None
) -> Metric:
    def clean(x: float | None) -> float | None:
        return None if x is None or not math.isfinite(x) else float(x)

    return Metric(name, clean(value), n, clean(low), clean(high), HIGHER_IS_BETTER[name])


def wilson(successes: int, n: int) -> tuple[float | None, float | None]:
    """The Wilson score interval of a proportion."""
    if n == 0:
        return None, None
    p = successes / n
    denom = 1 + Z * Z / n
    centre = (p + Z * Z / (2 * n)) / denom
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _mean_interval(values: np.ndarray) -> tuple[float, float, float]:
    mean = float(values.mean())
    se = float(values.std(ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return mean, mean - Z * se, mean + Z * se


def roc_auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """ROC AUC as the Mann-Whitney statistic (ties count half), as scikit-learn computes it."""
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return None
    from scipy.stats import rankdata  # imported when needed: the CLI starts faster

    ranks = rankdata(p)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _auc_interval(auc: float, n1: int, n0: int) -> tuple[float, float]:
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n1 - 1) * (q1 - auc * auc) + (n0 - 1) * (q2 - auc * auc)) / (n1 * n0)
    se = math.sqrt(max(var, 0.0))
    return max(0.0, auc - Z * se), min(1.0, auc + Z * se)


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)


def binary_metrics(y: np.ndarray, p: np.ndarray, predicted: np.ndarray) -> list[Metric]:
    """Classifier metrics of a binary model: `y` true (bool, positive class), `p` predicted
    probability of the positive class, `predicted` the label the model answered (bool)."""
    n = len(y)
    y = y.astype(bool)
    predicted = predicted.astype(bool)
    tp = int(np.count_nonzero(y & predicted))
    fp = int(np.count_nonzero(~y & predicted))
    fn = int(np.count_nonzero(y & ~predicted))
    tn = n - tp - fp - fn
    out = [_metric("accuracy", (tp + tn) / n if n else None, n, *wilson(tp + tn, n))]
    # undefined, not 0, without a predicted (precision) or a true (recall) positive: a window
    # of customers who all stayed has no recall to breach a threshold with
    out.append(_metric("precision", tp / (tp + fp) if tp + fp else None, n, *wilson(tp, tp + fp)))
    out.append(_metric("recall", tp / (tp + fn) if tp + fn else None, n, *wilson(tp, tp + fn)))
    f1 = float(_f1(np.array(tp), np.array(fp), np.array(fn)))
    if n:
        rng = np.random.default_rng(_SEED)
        cells = rng.multinomial(n, np.array([tp, fp, fn, tn]) / n, size=1000)
        boot = _f1(cells[:, 0], cells[:, 1], cells[:, 2])
        out.append(_metric("f1", f1, n, *np.quantile(boot, [0.025, 0.975])))
    else:
        out.append(_metric("f1", None, 0, None, None))
    auc = roc_auc(y, p) if n else None
    n1 = tp + fn
    auc_low, auc_high = _auc_interval(auc, n1, n - n1) if auc is not None else (None, None)
    out.append(_metric("roc_auc", auc, n, auc_low, auc_high))
    if n:
        eps = np.finfo(np.float64).eps
        p_true = np.clip(np.where(y, p, 1 - p), eps, 1 - eps)
        out.append(_metric("log_loss", *_count_first(-np.log(p_true))))
        out.append(_metric("brier", *_count_first((p - y) ** 2)))
    else:
        out += [_metric("log_loss", None, 0, None, None), _metric("brier", None, 0, None, None)]
    return out


def _count_first(losses: np.ndarray) -> tuple[float, int, float, float]:
    mean, low, high = _mean_interval(losses)
    return mean, len(losses), low, high


def multiclass_metrics(
    y: np.ndarray, predicted: np.ndarray, proba: np.ndarray | None, classes: list[Any]
) -> list[Metric]:
    """Accuracy, macro precision/recall/F1 and (with probabilities) log loss, one-vs-rest ROC
    AUC and Brier score of a multiclass model; `y` and `predicted` are class indices, `proba`
    rows of per-class probabilities."""
    n, k = len(y), len(classes)
    correct = int(np.count_nonzero(y == predicted))
    out = [_metric("accuracy", correct / n if n else None, n, *wilson(correct, n))]
    if not n:
        return out + [_metric(m, None, 0, None, None) for m in ("precision", "recall", "f1")]
    matrix = np.bincount(y * k + predicted, minlength=k * k).reshape(k, k)
    # scikit-learn averages over the classes present in the truth or the answers
    present = (matrix.sum(axis=0) + matrix.sum(axis=1)) > 0
    matrix = matrix[np.ix_(present, present)]
    k = int(present.sum())
    rng = np.random.default_rng(_SEED)
    boot = rng.multinomial(n, matrix.ravel() / n, size=1000).reshape(-1, k, k)
    for name, func in (
        ("precision", _macro_precision),
        ("recall", _macro_recall),
        ("f1", _macro_f1),
    ):
        out.append(_metric(name, float(func(matrix[None])[0]), n, *_pct(func(boot))))
    if proba is not None:
        eps = np.finfo(np.float64).eps
        rows = proba / proba.sum(axis=1, keepdims=True)
        p_true = np.clip(rows[np.arange(n), y], eps, 1 - eps)
        out.append(_metric("log_loss", *_count_first(-np.log(p_true))))
        out.append(_ovr_auc(y, rows))
        # the sum over classes of the squared gaps, as scikit-learn's multiclass Brier score
        onehot = np.zeros_like(rows)
        onehot[np.arange(n), y] = 1.0
        out.append(_metric("brier", *_count_first(((rows - onehot) ** 2).sum(axis=1))))
    return out


def _ovr_auc(y: np.ndarray, rows: np.ndarray) -> Metric:
    """One-vs-rest ROC AUC averaged over the classes (macro), over the classes with rows both
    in and out of them."""
    n = len(y)
    aucs, variances = [], []
    for c in range(rows.shape[1]):
        positive = y == c
        n1 = int(positive.sum())
        auc = roc_auc(positive, rows[:, c])
        if auc is None:
            continue
        low, _ = _auc_interval(auc, n1, n - n1)
        aucs.append(auc)
        variances.append(((auc - low) / Z) ** 2)
    if not aucs:
        return _metric("roc_auc", None, n, None, None)
    mean = float(np.mean(aucs))
    se = math.sqrt(sum(variances)) / len(aucs)
    return _metric("roc_auc", mean, n, max(0.0, mean - Z * se), min(1.0, mean + Z * se))


def _pct(values: np.ndarray) -> tuple[float, float]:
    low, high = np.quantile(values, [0.025, 0.975])
    return float(low), float(high)


def _diag(m: np.ndarray) -> np.ndarray:
    return np.diagonal(m, axis1=1, axis2=2).astype(float)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), 0.0)


def _macro_precision(m: np.ndarray) -> np.ndarray:
    return _ratio(_diag(m), m.sum(axis=1).astype(float)).mean(axis=1)


def _macro_recall(m: np.ndarray) -> np.ndarray:
    return _ratio(_diag(m), m.sum(axis=2).astype(float)).mean(axis=1)


def _macro_f1(m: np.ndarray) -> np.ndarray:
    tp = _diag(m)
    return _ratio(2 * tp, m.sum(axis=1) + m.sum(axis=2).astype(float)).mean(axis=1)


def regression_metrics(y: np.ndarray, value: np.ndarray) -> list[Metric]:
    """MAE, RMSE and R² of a regressor's values against the true numbers."""
    n = len(y)
    if n == 0:
        return [_metric(m, None, 0, None, None) for m in ("mae", "rmse", "r2")]
    err = value - y
    out = [_metric("mae", *_count_first(np.abs(err)))]
    mse, low, high = _mean_interval(err * err)
    out.append(_metric("rmse", math.sqrt(mse), n, math.sqrt(max(low, 0.0)), math.sqrt(high)))
    out.append(_metric("r2", _r2(y, value), n, *_r2_interval(y, value)))
    return out


def _r2(y: np.ndarray, value: np.ndarray) -> float:
    sst = float(((y - y.mean()) ** 2).sum())
    sse = float(((y - value) ** 2).sum())
    if sst == 0:
        return 1.0 if sse == 0 else 0.0  # scikit-learn's convention for a constant target
    return 1 - sse / sst


def _r2_interval(y: np.ndarray, value: np.ndarray) -> tuple[float | None, float | None]:
    if len(y) < 2:
        return None, None
    rng = np.random.default_rng(_SEED)
    if len(y) > 100_000:
        pick = rng.choice(len(y), 100_000, replace=False)
        y, value = y[pick], value[pick]
    w = rng.poisson(1.0, size=(200, len(y))).astype(float)
    sw = w.sum(axis=1)
    mean = (w * y).sum(axis=1) / sw
    sst = (w * (y[None, :] - mean[:, None]) ** 2).sum(axis=1)
    sse = (w * (y - value) ** 2).sum(axis=1)
    r2 = 1 - _ratio(sse, sst)
    return _pct(r2)


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, Any]]:
    """Rows per equal-width bin of predicted probability: count, mean predicted, observed
    positive rate (empty bins left out)."""
    index = np.minimum((p * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    pred = np.bincount(index, weights=p, minlength=bins)
    obs = np.bincount(index, weights=y.astype(float), minlength=bins)
    return [
        {
            "low": b / bins,
            "high": (b + 1) / bins,
            "rows": int(counts[b]),
            "predicted": float(pred[b] / counts[b]),
            "observed": float(obs[b] / counts[b]),
        }
        for b in range(bins)
        if counts[b]
    ]
