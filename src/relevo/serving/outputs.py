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
    if task == "binary":
        positive = probs[:, 1]
        labels = np.where(positive >= threshold, 1, 0)
        names: list[Any] = [classes[0], classes[1], None]
        if np.isnan(positive).any():  # no probability, no label (NaN >= 0.5 is false: not 0)
            labels[np.isnan(positive)] = 2
        return [
            {"probability": p, "label": names[i]}
            for p, i in zip(positive.tolist(), labels.tolist(), strict=True)
        ]
    keys = [str(c) for c in classes]
    winners = np.argmax(probs, axis=1).tolist()
    labels_of: list[Any] = list(classes)
    if np.isnan(probs).any():  # argmax takes a NaN for the largest: such a row has no label
        labels_of.append(None)
        for row in np.flatnonzero(np.isnan(probs).any(axis=1)).tolist():
            winners[row] = len(classes)
    return [
        {"probabilities": dict(zip(keys, row, strict=True)), "label": labels_of[w]}
        for row, w in zip(probs.tolist(), winners, strict=True)
    ]


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
    if task == "binary":
        positive = probs[:, 1]
        picked = (positive >= threshold).astype(int)
        picked[np.isnan(positive)] = len(classes)
        return {"probability": positive, "label": names[picked]}
    out = {f"probability_{c}": probs[:, k] for k, c in enumerate(classes)}
    picked = np.argmax(probs, axis=1)
    picked[np.isnan(probs).any(axis=1)] = len(classes)
    out["label"] = names[picked]
    return out
