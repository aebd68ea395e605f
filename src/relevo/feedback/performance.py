"""Realised performance: the logged predictions joined to their labels, per model and role
(champion, challenger, shadow), per window of prediction time.

Windows are indexed by when the model *predicted* (not when the label came): a late label
lands in its prediction's window, and since every report is computed from the stored rows on
demand, late labels re-evaluate their windows by themselves. Windows are aligned on multiples
of their length since the Unix epoch (a "1d" window is a UTC day).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from relevo.errors import InvalidInputError, Problem
from relevo.feedback import metrics as m
from relevo.feedback.report import FeedbackConfig
from relevo.monitoring.timespan import LONGEST

if TYPE_CHECKING:
    from relevo.context import Relevo
    from relevo.feedback.labels import LabelKind
    from relevo.store.joined import JoinedRows

_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str, what: str = "window") -> timedelta:
    """'30m', '12h', '1d', '2w' as a timedelta; a clear error naming `what` otherwise."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*", text or "")
    if not found or float(found.group(1)) <= 0:
        raise InvalidInputError(
            f"invalid {what} {text!r}",
            [Problem("a positive number and a unit: m, h, d or w (e.g. 1d)", option=what)],
        )
    seconds = float(found.group(1)) * _UNITS[found.group(2)]
    if seconds > LONGEST.total_seconds():  # past it: an overflow, or a time before year 1
        raise InvalidInputError(
            f"invalid {what} {text!r}",
            [Problem("a duration of at most 100 years (36525d)", option=what)],
        )
    return timedelta(seconds=seconds)


#: the metrics computed for each task (a threshold on another one would never be judged)
REGRESSION_METRICS = ("mae", "rmse", "r2")
CLASSIFIER_METRICS = tuple(name for name in m.HIGHER_IS_BETTER if name not in REGRESSION_METRICS)


def metrics_of(task: str) -> tuple[str, ...]:
    return REGRESSION_METRICS if task == "regression" else CLASSIFIER_METRICS


def feedback_config(
    rv: Relevo,
    deployment: str,
    thresholds: dict[str, float] | None = None,
    task: str | None = None,
) -> FeedbackConfig:
    """The deployment's feedback settings: its monitoring settings' "feedback" section over
    the RELEVO_FEEDBACK_* defaults; `thresholds` (one-off) over the stored ones. With `task`,
    a threshold on a metric that task has not (`r2` of a classifier) is refused."""
    section = rv.store.labels.feedback_settings(deployment)
    s = rv.settings
    stored = section.get("thresholds") or {}
    merged = checked_thresholds(
        {**stored, **(thresholds or {})} if isinstance(stored, dict) else stored, deployment, task
    )
    try:
        return FeedbackConfig(
            label_delay_days=float(section.get("label_delay_days", s.feedback_label_delay_days)),
            min_coverage=float(section.get("min_coverage", s.feedback_min_coverage)),
            min_labels=int(section.get("min_labels", s.feedback_min_labels)),
            thresholds=merged,
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"the feedback settings of {deployment!r} are not numbers where numbers belong",
            [Problem(str(exc), column="feedback")],
        ) from None


def checked_thresholds(
    thresholds: Any, deployment: str, task: str | None = None
) -> dict[str, float]:
    """Business thresholds as metric name -> number, each name a metric relevo computes (for
    `task`'s models when given: a threshold on another task's metric is never judged)."""
    try:
        merged = {str(k): float(v) for k, v in dict(thresholds).items()}
    except (TypeError, ValueError, AttributeError):
        raise InvalidInputError(
            f"the feedback thresholds of {deployment!r} must map metric names to numbers",
            [Problem(f"got {thresholds!r}", column="thresholds")],
        ) from None
    for name in merged:
        if name not in m.HIGHER_IS_BETTER:
            raise InvalidInputError(
                f"unknown metric {name!r} in a threshold",
                [Problem(f"use one of {', '.join(m.HIGHER_IS_BETTER)}", column="thresholds")],
            )
        if task is not None and name not in metrics_of(task):
            raise InvalidInputError(
                f"no metric {name!r} for the {task} model of {deployment!r}: a threshold on "
                "it would never be judged",
                [Problem(f"use one of {', '.join(metrics_of(task))}", column="thresholds")],
            )
    return merged


@dataclass(frozen=True)
class Decoded:
    """The joined rows as arrays: what a model said and what was true, row by row."""

    model: np.ndarray  # object: "NAME:VERSION"
    role: np.ndarray  # object
    seconds: np.ndarray  # float: prediction time, Unix seconds
    labelled: np.ndarray  # bool
    delay_hours: np.ndarray  # float (NaN without a label)
    #: binary: P(positive); multiclass: (n, k) probabilities; regression: the value
    score: np.ndarray
    #: binary: answered positive (bool); multiclass: the answered class index
    predicted: np.ndarray
    #: binary: truly positive (bool); multiclass: class index; regression: the true value
    truth: np.ndarray
    features: list[str] | None

    def take(self, pick: np.ndarray | slice) -> Decoded:
        """The rows picked by a boolean mask or a slice (a slice gives views)."""
        features = None
        if self.features is not None:
            if isinstance(pick, slice):
                features = self.features[pick]
            else:
                features = [self.features[i] for i in np.flatnonzero(pick)]
        return Decoded(
            self.model[pick],
            self.role[pick],
            self.seconds[pick],
            self.labelled[pick],
            self.delay_hours[pick],
            self.score[pick],
            self.predicted[pick],
            self.truth[pick],
            features,
        )


def decode(rows: JoinedRows, task: str, classes: Sequence[Any]) -> Decoded:
    """Outputs and labels of the joined rows as arrays (rows whose model failed are left out)."""
    keep = np.flatnonzero([out is not None for out in rows.output])
    n = len(keep)
    outputs = [orjson.loads(rows.output[i]) for i in keep]  # type: ignore[arg-type]
    raw_labels = [rows.label[i] for i in keep]
    labelled = np.fromiter((x is not None for x in raw_labels), bool, n)
    truths = [orjson.loads(x) if x is not None else None for x in raw_labels]
    seconds = rows.created_s[keep] if n else np.zeros(0)
    delay = (rows.known_s[keep] - seconds) / 3600.0 if n else np.zeros(0)
    delay = np.where(labelled, delay, np.nan)
    if task == "regression":
        score = np.fromiter((o.get("value", np.nan) for o in outputs), float, n)
        predicted = score
        truth = np.fromiter((t if t is not None else np.nan for t in truths), float, n)
    elif task == "binary":
        positive = classes[1]
        score = np.fromiter((o.get("probability", np.nan) for o in outputs), float, n)
        predicted = np.fromiter((o.get("label") == positive for o in outputs), bool, n)
        truth = np.fromiter((t == positive for t in truths), bool, n)
    else:
        index = {c: k for k, c in enumerate(classes)}
        names = [str(c) for c in classes]
        score = np.array(
            [[o.get("probabilities", {}).get(c, np.nan) for c in names] for o in outputs],
            dtype=float,
        ).reshape(n, len(classes))
        predicted = np.fromiter((index.get(o.get("label"), -1) for o in outputs), int, n)
        truth = np.fromiter((index.get(t, -1) if t is not None else -1 for t in truths), int, n)
    return Decoded(
        np.array([rows.model[i] for i in keep], dtype=object),
        np.array([rows.role[i] for i in keep], dtype=object),
        np.asarray(seconds, dtype=float),
        labelled,
        np.asarray(delay, dtype=float),
        score,
        predicted,
        truth,
        None if rows.features is None else [rows.features[i] for i in keep],
    )


def load_rows(
    rv: Relevo,
    deployment: str,
    kind: LabelKind,
    since: datetime | None,
    until: datetime,
    *,
    features: bool = False,
) -> Decoded:
    """The deployment's predictions in [since, until) with their labels, as arrays. Binary
    classifiers and regressors without features take the store's numeric path (the database
    parses the JSON); multiclass models, and any read with features, decode here."""
    store = rv.store.labels
    if features or kind.task not in ("binary", "regression"):
        return decode(
            store.joined(deployment, since, until, features=features), kind.task, kind.classes
        )
    positive = orjson.dumps(kind.classes[1]).decode() if kind.task == "binary" else None
    f = store.scores(deployment, since, until, positive)
    labelled = f["labelled"]
    seconds = f["seconds"]
    delay = np.where(labelled, (f["known"] - seconds) / 3600.0, np.nan)
    binary = kind.task == "binary"
    return Decoded(
        f["model"],
        f["role"],
        seconds,
        labelled,
        delay,
        f["score"],
        f["predicted"] == 1.0 if binary else f["predicted"],
        f["truth"] == 1.0 if binary else f["truth"],
        None,
    )


def compute_metrics(task: str, classes: Sequence[Any], d: Decoded) -> dict[str, m.Metric]:
    """The task's metrics on the labelled rows of `d`."""
    lab = d.labelled
    if task == "regression":
        found = m.regression_metrics(d.truth[lab], d.predicted[lab])
    elif task == "binary":
        found = m.binary_metrics(d.truth[lab], d.score[lab], d.predicted[lab])
    else:
        proba = d.score[lab]
        usable = proba if not np.isnan(proba).any() else None
        found = m.multiclass_metrics(d.truth[lab], d.predicted[lab], usable, list(classes))
    return {x.name: x for x in found}


def primary_metric(task: str) -> str:
    """The metric a trend follows unless thresholds name others."""
    return {"binary": "roc_auc", "multiclass": "accuracy"}.get(task, "rmse")


def window_bounds(seconds: np.ndarray, width: float) -> np.ndarray:
    """Each row's window index (its start in Unix seconds divided by the width)."""
    return np.floor(seconds / width).astype(np.int64)


def is_mature(
    end: datetime, now: datetime, labelled: int, rows: int, config: FeedbackConfig
) -> bool:
    """Labels had time to arrive (the delay passed since the window's end) or enough came."""
    if now >= end + timedelta(days=config.label_delay_days):
        return True
    return rows > 0 and labelled / rows >= config.min_coverage


def median_or_none(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(np.median(values)) if len(values) else None


def to_time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
