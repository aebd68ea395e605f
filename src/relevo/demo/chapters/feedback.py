"""Chapter: three weeks of predictions whose truth arrives a week later; the churn mechanism
changes for short-tenure month-to-month customers; the labels show performance falling, at
what rate, when it will cross the business threshold, and for whom the model went wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from relevo.context import Relevo
from relevo.datasets import CHURN_FEATURES, CHURN_ID, CHURN_TARGET, make_churn
from relevo.demo.story import Chapter, Demo, need
from relevo.demo.view import table
from relevo.feedback.labels import KeyedLabels, ingest_keyed
from relevo.feedback.report import WindowPerformance
from relevo.feedback.service import PerformanceService
from relevo.registry.types import ModelVersion
from relevo.serving.entries import LogEntry, encode, entry_rows
from relevo.serving.ids import new_ids

FEEDBACK = "churn-labels"  # no wider than the other demo deployments: tables fit 80 columns
DAYS = 21
LABEL_DELAY = timedelta(days=7)
THRESHOLD = {"roc_auc": 0.75}
#: the churn mechanism starts changing on this day and has fully changed RAMP days later
SHIFT_FROM, RAMP = 3, 7


def run(demo: Demo) -> None:
    rv, version = demo.rv, need(demo.version, "register")
    model = need(demo.model, "train")
    rv.deployments.deploy(FEEDBACK, version.ref, key=CHURN_ID, actor="demo")
    # predictions at this time of day, DAYS days ago and on: a second run of the demo logs
    # later ones, which its labels then join (the latest prediction for the customer)
    first = datetime.now(UTC) - timedelta(days=DAYS)
    per_day = max(200, demo.options.customers // 5)
    days = []
    for d in range(DAYS):
        shift = min(1.0, max(0.0, (d - SHIFT_FROM) / RAMP))
        frame = make_churn(
            per_day,
            seed=demo.options.seed + 1000 + d,
            segment_shift=3.0 * shift,
            mechanism_shift=shift,
            id_start=80_000_000 + d * per_day,
        )
        when = first + timedelta(days=d)
        _log(rv, version, model, frame, when)
        days.append((when, frame))
    demo.view.say(
        f"{DAYS} days of predictions for {FEEDBACK}, {per_day:,} customers a day. Whether a "
        f"customer churned is known {LABEL_DELAY.days} days later, by customer id and date: "
        "each label joins the latest prediction for that customer before it."
    )
    arrived = 0
    for when, frame in days:
        seen = when + LABEL_DELAY
        if seen > datetime.now(UTC):
            continue  # not known yet: these days are judged on estimates only
        done = ingest_keyed(
            rv,
            FEEDBACK,
            [
                KeyedLabels(
                    range(1, len(frame) + 1),
                    frame[CHURN_ID].tolist(),
                    [seen] * len(frame),
                    frame[CHURN_TARGET].tolist(),
                )
            ],
            received_at=seen,
        )
        arrived += done.accepted
    report = PerformanceService(rv).performance(
        FEEDBACK, "1d", f"{DAYS + 1}d", segments=True, thresholds=THRESHOLD
    )
    model_perf = need(report.champion, "feedback")
    demo.view.show(
        table(
            f"ROC AUC of {version.ref} by day of prediction ({arrived:,} labels)",
            ["day", "labelled", "ROC AUC", "95% CI", "estimated", ""],
            [_row(w) for w in model_perf.windows],
            right=["labelled", "ROC AUC", "estimated"],
        )
    )
    trend = model_perf.trends.get("roc_auc", {})
    rate, low, high = (trend.get(k) for k in ("rate_per_week", "rate_low", "rate_high"))
    ttt = trend.get("time_to_threshold_seconds")
    check = report.thresholds[0]
    if rate is not None:
        if check.breached:
            crossing = "already falls short of it"
        elif trend.get("status") == "crossed":  # the fitted line, not yet the whole period
            crossing = "is on a line already past it, though all labels together still meet it"
        else:
            crossing = _when(ttt)
        demo.view.say(
            f"ROC AUC changes by [bold]{rate:+.3f} a week[/] (95 % CI {low:+.3f} to "
            f"{high:+.3f}); against the business threshold >= {THRESHOLD['roc_auc']}, it "
            f"{crossing}."
        )
    worst = model_perf.segments[0] if model_perf.segments else None
    if worst is not None:
        expected = worst["expected_error"]
        against = f"it expected {expected:.0%}" if expected is not None else "overall"
        demo.view.say(
            f"Worst segment: [bold]{' and '.join(worst['conditions'])}[/], "
            f"{worst['rows']:,} customers: the model was wrong on {worst['error']:.0%} of "
            f"them where {against} (q = {worst['q_value']:.1g})."
        )
    drift_days = sum(w.concept_drift for w in model_perf.windows)
    demo.view.say(
        f"Estimated from the probabilities alone, the model looks as good as ever; the labels "
        f"contradict that estimate on {drift_days} of the labelled days: likely concept drift."
    )
    demo.view.command(f"relevo performance {FEEDBACK} --segments --html report.html")
    demo.summary["feedback"] = {
        "deployment": FEEDBACK,
        "labels": arrived,
        "rate_per_week": rate,
        "time_to_threshold_days": _days(ttt),
        "threshold_breached": check.breached,
        # "crossed": the fitted line is past the threshold at the last day (see docs/feedback.md)
        "trend_status": trend.get("status"),
        "worst_segment": list(worst["conditions"]) if worst else None,
        "concept_drift_days": drift_days,
    }


def _log(
    rv: Relevo, version: ModelVersion, model: Any, frame: pd.DataFrame, when: datetime
) -> None:
    """Store the rows' predictions as made at `when`, through the log's own entry format."""
    p = model.predict_proba(frame[CHURN_FEATURES])[:, 1]
    classes = version.classes or [0, 1]
    outputs = [{"probability": float(q), "label": classes[int(q >= 0.5)]} for q in p]
    features = {c: frame[c].astype(object).where(frame[c].notna(), None).tolist()
                for c in CHURN_FEATURES}  # fmt: skip
    entry = LogEntry(
        FEEDBACK,
        version.name,
        version.version,
        when.timestamp(),
        new_ids(len(frame)),
        features,
        outputs,
        1.0,
        frame[CHURN_ID].tolist(),
    )
    rv.store.predictions.insert_many(entry_rows(encode(entry)))


def _row(w: WindowPerformance) -> list[str]:
    found = w.metrics.get("roc_auc")
    value = ci = ""
    if found is not None and found.value is not None:
        value = f"{found.value:.3f}"
        if found.low is not None and found.high is not None:
            ci = f"{found.low:.2f}-{found.high:.2f}"
    est = w.estimated("roc_auc")
    flag = "drift!" if w.concept_drift else ("" if w.mature else "waiting")
    return [
        w.start.strftime("%b %d"),
        f"{w.coverage:.0%}",
        value,
        ci,
        "" if est is None else f"{est:.3f}",
        flag,
    ]


def _days(value: object) -> float | None:
    if isinstance(value, int | float):
        return float(value) / 86400.0
    if isinstance(value, timedelta):
        return value.total_seconds() / 86400.0
    return None


def _when(value: object) -> str:
    days = _days(value)
    if days is None:
        return "is not heading for it"
    return f"will cross it in about {days:.0f} days" if days >= 1 else "is about to cross it"


CHAPTER = Chapter(
    key="feedback",
    title="Close the feedback loop",
    why="Labels arrive a week late; they show the model decaying after the churn mechanism "
    "changed, how fast, and for whom.",
    run=run,
)
