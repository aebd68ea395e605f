"""`PerformanceService`: the feedback loop's reports, for every door (CLI, HTTP, Python).

Per model and role and per window: realised metrics with intervals, coverage, label delay and
maturity; the trend of the primary metric (and of every metric with a threshold) across mature
windows with its rate and time to the threshold; the performance estimated from probabilities
alone beside the realised one, and a flag when early labels contradict it (concept drift);
optionally the worst segments. `label_metric` gives the rollout gates a label metric.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd

from relevo.feedback.calibration import calibration
from relevo.feedback.degradation import MetricPoint, trend
from relevo.feedback.estimate import concept_drift, estimate_performance
from relevo.feedback.labels import label_kind
from relevo.feedback.metrics import HIGHER_IS_BETTER, Metric, calibration_table
from relevo.feedback.performance import (
    Decoded,
    compute_metrics,
    feedback_config,
    is_mature,
    load_rows,
    median_or_none,
    parse_duration,
    primary_metric,
    to_time,
    window_bounds,
)
from relevo.feedback.report import (
    FeedbackConfig,
    ModelPerformance,
    PerformanceReport,
    ThresholdCheck,
    WindowPerformance,
    champion_of,
)
from relevo.feedback.segments import worst_segments
from relevo.routing.gates import Measurement

if TYPE_CHECKING:
    from relevo.context import Relevo
    from relevo.routing.deployment import Deployment

_ROLES = {"champion": 0, "challenger": 1, "shadow": 2}


class PerformanceService:
    """Performance reports of a relevo store's deployments."""

    def __init__(self, rv: Relevo) -> None:
        self.rv = rv

    def performance(
        self,
        deployment: str,
        window: str = "1d",
        since: str | datetime | None = None,
        segments: bool = False,
        *,
        thresholds: dict[str, float] | None = None,
        now: datetime | None = None,
    ) -> PerformanceReport:
        """The deployment's performance per `window` of prediction time, from `since` (a
        duration back from now like "7d", a time, or None: the whole log) until now."""
        rv = self.rv
        width = parse_duration(window, "window")
        now = now or datetime.now(UTC)
        start = now - parse_duration(since, "since") if isinstance(since, str) else since
        kind = label_kind(rv, deployment)
        config = feedback_config(rv, deployment, thresholds, kind.task)
        data = load_rows(rv, deployment, kind, start, now, features=segments)
        models = []
        groups = _groups(data)
        for model, role in groups:
            # one group (the usual case): all the rows, without comparing a million names
            pick = None if len(groups) == 1 else (data.model == model) & (data.role == role)
            models.append(
                self._model(
                    kind.task,
                    kind.classes,
                    model,
                    role,
                    data if pick is None else data.take(pick),
                    width,
                    now,
                    config,
                    segments,
                )
            )
        current = rv.deployments.get(deployment).champion_ref
        checks = _thresholds(champion_of(models, current), config)
        return PerformanceReport(
            deployment, kind.task, window, start, now, config, models, checks, current
        )

    def _model(
        self,
        task: str,
        classes: tuple[Any, ...],
        model: str,
        role: str,
        d: Decoded,
        width: timedelta,
        now: datetime,
        config: FeedbackConfig,
        with_segments: bool,
    ) -> ModelPerformance:
        w = width.total_seconds()
        index = window_bounds(d.seconds, w)
        windows = []
        ordered = bool((index[1:] >= index[:-1]).all())
        for k in np.unique(index):
            if ordered:  # rows in time order: each window is a slice (views, no copies)
                part = d.take(slice(*np.searchsorted(index, [k, k + 1])))
            else:
                part = d.take(index == k)
            start, end = to_time(k * w), to_time((k + 1) * w)
            labelled = int(part.labelled.sum())
            mature = is_mature(end, now, labelled, len(part.labelled), config)
            windows.append(_window(task, classes, part, start, end, labelled, mature, config))
        trends = _trends(task, windows, config)
        found = None
        if with_segments:
            found = self._segments(model, task, d)
        check = _calibration_check(task, d, windows)
        return ModelPerformance(
            model,
            role,
            len(d.labelled),
            int(d.labelled.sum()),
            compute_metrics(task, classes, d),
            windows,
            trends,
            found,
            check,
        )

    def _segments(self, model: str, task: str, d: Decoded) -> list[dict[str, Any]]:
        assert d.features is not None
        lab = np.flatnonzero(d.labelled)
        if len(lab) == 0:
            return []
        features = pd.DataFrame.from_records([orjson.loads(d.features[i]) for i in lab])
        expected = None
        if task == "regression":
            errors = np.abs(d.predicted[lab] - d.truth[lab]).astype(float)
        else:
            errors = (d.predicted[lab] != d.truth[lab]).astype(float)
            if task == "binary":  # what a calibrated model expects to get wrong per row
                p = d.score[lab]
                expected = np.minimum(p, 1.0 - p)
        reference = self.rv.registry.reference_profile(model).inputs
        found = worst_segments(features, errors, reference=reference, expected=expected)
        return [s.to_dict() for s in found]


def _groups(data: Decoded) -> list[tuple[str, str]]:
    # every pair starts a run of equal rows: found where the group changes (rows mostly
    # come grouped, so a few places), not by deduplicating a million rows
    m, r = data.model, data.role
    if not len(m):
        return []
    change = np.flatnonzero((m[1:] != m[:-1]) | (r[1:] != r[:-1])) + 1
    pairs = {(str(m[i]), str(r[i])) for i in [0, *change.tolist()]}
    return sorted(pairs, key=lambda p: (_ROLES.get(p[1], 9), p[0]))


def _window(
    task: str,
    classes: tuple[Any, ...],
    part: Decoded,
    start: datetime,
    end: datetime,
    labelled: int,
    mature: bool,
    config: FeedbackConfig,
) -> WindowPerformance:
    metrics = compute_metrics(task, classes, part)
    table: list[dict[str, Any]] = []
    guess: dict[str, Any] | None = None
    drift = False
    if task == "binary":
        lab = part.labelled
        if labelled:
            table = calibration_table(part.truth[lab], part.score[lab])
        found = estimate_performance(_sample(part.score))
        guess = found.to_dict()
        if labelled >= config.min_labels:
            pick = _sample(np.flatnonzero(lab))
            check = concept_drift(found, part.score[pick], part.truth[pick])
            drift = bool(check.flag)
            guess["concept_drift"] = check.to_dict()
    return WindowPerformance(
        start,
        end,
        len(part.labelled),
        labelled,
        median_or_none(part.delay_hours),
        mature,
        metrics,
        table,
        guess,
        drift,
    )


#: rows of a window the estimate and the concept-drift check simulate at most: their intervals
#: come from drawing labels for every row 200 times, so a large window is sampled (seeded); the
#: intervals are then those of this many rows, a little wider than the window's own
ESTIMATE_ROWS = 5_000


def _sample(values: np.ndarray) -> np.ndarray:
    if len(values) <= ESTIMATE_ROWS:
        return values
    rng = np.random.default_rng(len(values))
    return values[np.sort(rng.choice(len(values), ESTIMATE_ROWS, replace=False))]


def _judged(w: WindowPerformance, config: FeedbackConfig) -> bool:
    return w.mature and w.labelled >= config.min_labels


def _trends(
    task: str, windows: list[WindowPerformance], config: FeedbackConfig
) -> dict[str, dict[str, Any]]:
    names = [primary_metric(task), *config.thresholds]
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(names):
        points = []
        for w in windows:
            metric = w.metrics.get(name)
            if not _judged(w, config) or metric is None or metric.value is None:
                continue
            low = metric.low if metric.low is not None else metric.value
            high = metric.high if metric.high is not None else metric.value
            points.append(MetricPoint(w.start, metric.value, metric.count, low, high))
        if len(points) < 2:
            continue
        found = trend(
            points,
            threshold=config.thresholds.get(name),
            higher_is_better=HIGHER_IS_BETTER.get(name, True),
        )
        out[name] = found.to_dict()
    return out


def _calibration_check(
    task: str, d: Decoded, windows: list[WindowPerformance]
) -> dict[str, Any] | None:
    """The model's calibration on production rows it never trained on: the labelled rows of
    the earliest window, before any later drift (the estimate means something only if so)."""
    if task != "binary" or not windows:
        return None
    first = next((w for w in windows if w.labelled), None)
    if first is None:
        return None
    t0, t1 = first.start.timestamp(), first.end.timestamp()
    pick = d.labelled & (d.seconds >= t0) & (d.seconds < t1)
    found = calibration(d.score[pick], d.truth[pick])
    return {"ece": found.ece, "ok": found.ok, "note": found.note, "window": first.start.isoformat()}


def _thresholds(champion: ModelPerformance | None, config: FeedbackConfig) -> list[ThresholdCheck]:
    checks = []
    for name, limit in config.thresholds.items():
        higher = HIGHER_IS_BETTER[name]
        judged = [w for w in (champion.windows if champion else []) if _judged(w, config)]
        latest = judged[-1] if judged else None
        metric: Metric | None = latest.metrics.get(name) if latest else None
        value = metric.value if metric is not None else None
        breached = None if value is None else (value < limit if higher else value > limit)
        checks.append(
            ThresholdCheck(name, limit, higher, value, latest.start if latest else None, breached)
        )
    return checks


def label_metric(rv: Relevo, state: Deployment) -> tuple[Measurement, Measurement] | None:
    """The champion's and the challenger's label metric (ROC AUC for a binary classifier,
    accuracy for a multiclass one, R² for a regressor) on labelled rows made since the
    challenger was deployed, for the rollout gates; for a shadow mirroring every row, on the
    very same predictions (with a share mirrored, the champion's side is all its labelled rows,
    of which the shadow's are a random share: read without decoding every output, as one
    paired by id would need). None while either has fewer labelled rows than the deployment's
    `min_labels`."""
    if not state.has_challenger:
        return None
    kind = label_kind(rv, state.name)
    config = feedback_config(rv, state.name)
    since = state.step_started_at or state.updated_at
    data = load_rows(rv, state.name, kind, since, datetime.now(UTC) + timedelta(seconds=1))
    name = {"binary": "roc_auc", "multiclass": "accuracy"}.get(kind.task, "r2")
    champion = data.take(
        data.labelled & (data.model == state.champion_ref) & (data.role == "champion")
    )
    challenger = data.take(data.labelled & (data.model == state.challenger_ref))
    out = []
    for arm in (champion, challenger):
        if len(arm.labelled) < config.min_labels:
            return None
        value = compute_metrics(kind.task, kind.classes, arm)[name].value
        if value is None:
            return None
        out.append(Measurement(value, len(arm.labelled)))
    return out[0], out[1]
