"""The metrics the validation gate measures on a labelled sample, and which way each is better.

Every metric can be bounded from either side (`--min` a floor, `--max` a ceiling); its
direction says which way "not worse than the champion" points. Classifiers: accuracy, f1,
precision, recall (the positive class for a binary model, otherwise macro-averaged over the
classes in the labels or the predictions, as scikit-learn's default), roc_auc (one-vs-rest
for several classes) and log_loss; a binary model also brier. Regressors: mae, rmse and r2.
Computed with scikit-learn on the model's served outputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from relevo.errors import InvalidInputError, Problem
from relevo.registry.flavors.base import RawOutput


@dataclass(frozen=True)
class Metric:
    """A metric: its name, whether higher values are better, and the tasks it applies to."""

    name: str
    higher_is_better: bool
    tasks: frozenset[str]


_CLASSIFIER = frozenset({"binary", "multiclass"})
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", True, _CLASSIFIER),
        Metric("roc_auc", True, _CLASSIFIER),
        Metric("f1", True, _CLASSIFIER),
        Metric("precision", True, _CLASSIFIER),
        Metric("recall", True, _CLASSIFIER),
        Metric("log_loss", False, _CLASSIFIER),
        Metric("brier", False, frozenset({"binary"})),
        Metric("mae", False, frozenset({"regression"})),
        Metric("rmse", False, frozenset({"regression"})),
        Metric("r2", True, frozenset({"regression"})),
    )
}
#: what `--against` compares when no metric is named
PRIMARY = {"binary": "roc_auc", "multiclass": "accuracy", "regression": "rmse"}


def metric(name: str, task: str) -> Metric:
    """The metric `name` for a model of `task`, or an error listing those that apply."""
    found = METRICS.get(name.strip().lower())
    known = [m.name for m in METRICS.values() if task in m.tasks]
    if found is None or task not in found.tasks:
        what = "unknown metric" if found is None else f"not a metric of a {task} model"
        raise InvalidInputError(f"{name!r}: {what}; use one of {', '.join(known)}")
    return found


def for_task(task: str) -> list[Metric]:
    return [m for m in METRICS.values() if task in m.tasks]


def _label_key(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))  # 1.0 read from a CSV column is the class 1
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    return str(value)


def class_indices(y: Sequence[Any], classes: list[Any], column: str) -> np.ndarray:
    """Each label's position in the model's classes (labels compared as text: 1, 1.0, "1")."""
    index = {_label_key(c): i for i, c in enumerate(classes)}
    out = np.empty(len(y), dtype=np.int64)
    unknown: dict[str, int] = {}
    for i, value in enumerate(y):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise InvalidInputError(
                f"target column {column!r} has a missing label",
                [Problem("missing label", row=i, column=column)],
            )
        position = index.get(_label_key(value))
        if position is None:
            unknown.setdefault(_label_key(value), i)
            continue
        out[i] = position
    if unknown:
        shown = ", ".join(sorted(unknown)[:5])
        raise InvalidInputError(
            f"target column {column!r} holds labels the model does not know ({shown}); "
            f"its classes are {', '.join(_label_key(c) for c in classes)}",
            [Problem(f"unknown label {k!r}", row=r, column=column) for k, r in unknown.items()],
        )
    return out


def compute(
    task: str, classes: list[Any] | None, raw: RawOutput, y: Sequence[Any], column: str
) -> dict[str, float]:
    """Every metric of the task on one sample: the model's raw outputs against labels `y`."""
    from sklearn import metrics as skm  # imported when needed: the CLI starts faster

    if task == "regression":
        assert raw.values is not None
        try:
            truth = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"target column {column!r} must hold numbers for a regressor: {exc}"
            ) from None
        pred = np.asarray(raw.values, dtype=np.float64)
        return {
            "mae": float(skm.mean_absolute_error(truth, pred)),
            "rmse": float(math.sqrt(skm.mean_squared_error(truth, pred))),
            "r2": float(skm.r2_score(truth, pred)),
        }
    assert raw.probabilities is not None and classes is not None
    probs = np.asarray(raw.probabilities, dtype=np.float64)
    truth = class_indices(y, classes, column)
    labels = list(range(len(classes)))
    if task == "binary":
        predicted = (probs[:, 1] >= 0.5).astype(np.int64)  # the served label's threshold
        average, scores = "binary", probs[:, 1]
    else:
        predicted = np.argmax(probs, axis=1)
        average, scores = "macro", probs
    out: dict[str, float] = {
        "accuracy": float(skm.accuracy_score(truth, predicted)),
        "f1": _safe(skm.f1_score, truth, predicted, average),
        "precision": _safe(skm.precision_score, truth, predicted, average),
        "recall": _safe(skm.recall_score, truth, predicted, average),
        "log_loss": float(skm.log_loss(truth, np.clip(probs, 1e-15, 1), labels=labels)),
    }
    present = np.unique(truth)
    if task == "binary":
        out["brier"] = float(skm.brier_score_loss(truth, probs[:, 1]))
        out["roc_auc"] = (
            float(skm.roc_auc_score(truth, scores)) if present.size == 2 else float("nan")
        )
    elif present.size == len(classes):
        out["roc_auc"] = float(skm.roc_auc_score(truth, scores, multi_class="ovr"))
    else:
        out["roc_auc"] = float("nan")  # a class absent from the sample: undefined
    return out


def _safe(fn: Callable[..., Any], truth: np.ndarray, pred: np.ndarray, average: str) -> float:
    """scikit-learn's score: the positive class's, or the macro average over the classes in the
    labels or the predictions (its default: a class the sample lacks and the model never
    predicts adds no 0); an undefined ratio is 0, without scikit-learn's warning."""
    if average == "binary":
        return float(fn(truth, pred, pos_label=1, zero_division=0))
    return float(fn(truth, pred, average=average, zero_division=0))
