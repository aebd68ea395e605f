"""From a model's raw output to what users see: one small dict per row, same for every flavor."""

from __future__ import annotations

from typing import Any

import numpy as np

from relevo.registry.flavors.base import RawOutput


def _plain(values: np.ndarray) -> list[Any]:
    return values.tolist()


def format_outputs(
    task: str, classes: list[Any] | None, raw: RawOutput, threshold: float = 0.5
) -> list[dict[str, Any]]:
    """Per row: binary -> probability of the positive class and label; multiclass -> the
    probability of every class and the label; regression -> value."""
    if task == "regression":
        assert raw.values is not None
        return [{"value": v} for v in raw.values.tolist()]
    assert raw.probabilities is not None and classes is not None
    probs = raw.probabilities
    picked = _picked(task, probs, threshold).tolist()
    names: list[Any] = [*classes, None]
    if task == "binary":
        return [
            {"probability": p, "label": names[i]}
            for p, i in zip(probs[:, 1].tolist(), picked, strict=True)
        ]
    keys = [str(c) for c in classes]
    return [
        {"probabilities": dict(zip(keys, row, strict=True)), "label": names[i]}
        for row, i in zip(probs.tolist(), picked, strict=True)
    ]


def _picked(task: str, probs: np.ndarray, threshold: float) -> np.ndarray:
    """Each row's label as its class's index: the positive class from `threshold` (binary), the
    most probable one (multiclass); one past the last class for a row without a label, whose
    probability is NaN (NaN >= 0.5 is false, and argmax takes a NaN for the largest: either
    would pick a class on no evidence)."""
    if task == "binary":
        positive = probs[:, 1]
        picked = (positive >= threshold).astype(np.intp)
        none = np.isnan(positive)
    else:
        picked = np.argmax(probs, axis=1)
        none = np.isnan(probs).any(axis=1)
    if none.any():
        picked[none] = probs.shape[1]
    return picked


def scores(task: str, classes: list[Any] | None, raw: RawOutput) -> np.ndarray:
    """The one number (or label) per row that monitoring profiles: P(positive), value, label."""
    if task == "regression":
        assert raw.values is not None
        return raw.values
    assert raw.probabilities is not None and classes is not None
    if task == "binary":
        return raw.probabilities[:, 1]
    winners = np.argmax(raw.probabilities, axis=1)
    return np.asarray([str(classes[w]) for w in winners], dtype=object)


def output_names(task: str, classes: list[Any] | None) -> list[str]:
    """The names of `output_columns`, in its order, without a model output at hand."""
    if task == "regression":
        return ["value"]
    if task == "binary":
        return ["probability", "label"]
    return [*(f"probability_{c}" for c in classes or ()), "label"]


def output_columns(
    task: str, classes: list[Any] | None, raw: RawOutput, threshold: float = 0.5
) -> dict[str, np.ndarray]:
    """The outputs as columns (batch scoring's file): the same values as `format_outputs`,
    without a dict per row. Multiclass probabilities are `probability_<class>`."""
    if task == "regression":
        assert raw.values is not None
        return {"value": np.asarray(raw.values)}
    assert raw.probabilities is not None and classes is not None
    probs = raw.probabilities
    names = np.empty(len(classes) + 1, dtype=object)
    names[:] = [*classes, None]  # the last: a row without a probability has no label
    labels = names[_picked(task, probs, threshold)]
    if task == "binary":
        return {"probability": probs[:, 1], "label": labels}
    out = {f"probability_{c}": probs[:, k] for k, c in enumerate(classes)}
    out["label"] = labels
    return out
