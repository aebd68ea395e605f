"""The drift provider of the alert engine: `signals(rv, deployment, now)`.

Over the last `window` of the deployment's drift settings (default 1 h), on the rows of the
model it serves now that answered most of them (the champion, or a canary challenger past
half the traffic; never an old champion's rows after a swap), against that model version's
reference:

* "feature_drift", one per feature (subject: the feature), the value its test judged;
* "dataset_drift" (subject ""), the share of drifted features against `dataset_share`;
* "prediction_drift" and "multivariate_drift" (subject "");
* and, against the window before (subject "previous"): "dataset_drift" and
  "prediction_drift", for a change that is sudden rather than a slow slide from the reference;
* "data_quality", per feature: missing values above the reference's own share, values out of
  the reference's range, categories it never showed; subject "rows": rows rejected by
  validation;
* "degenerate_output": NaN outputs, a constant score, a single predicted class where the
  reference makes that improbable (subjects "nan_outputs", "constant_score", "single_class").

A signal is not evaluable (the engine keeps its previous state) when its window holds fewer
than `min_rows` values; a deployment without any profiled row in the window gets no drift
signals at all ("no_predictions" is the traffic provider's).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from relevo.errors import NotFoundError
from relevo.monitoring.drift import DriftConfig, DriftReport, FeatureDrift
from relevo.monitoring.numeric import NumericProfile
from relevo.monitoring.profile import CategoricalProfile
from relevo.monitoring.service import MonitoringService
from relevo.monitoring.signals import Signal
from relevo.monitoring.timespan import parse_duration
from relevo.monitoring.windows import Window

if TYPE_CHECKING:
    from relevo.context import Relevo

#: how improbable a single predicted class must be under the reference to be degenerate
SINGLE_CLASS_ALPHA = 1e-4


def signals(rv: Relevo, deployment: str, now: datetime) -> list[Signal]:
    service = MonitoringService(rv)
    config = service.config(deployment)
    span = parse_duration(config.window, "window")
    try:
        # the models the deployment serves now: after a swap, the old champion's rows (its
        # buckets, on its own reference) are not the new champion's doing
        models = rv.deployments.get(deployment).models
        window = service.window(deployment, now - span, now, among=models)
    except NotFoundError:
        return []
    report = service.report(window, "reference", config)
    out = [_feature(deployment, f) for f in report.features]
    out.append(_dataset(deployment, report, ""))
    for rule, column in (
        ("prediction_drift", report.prediction),
        ("multivariate_drift", report.multivariate),
    ):
        if column is not None:
            out.append(_column(deployment, rule, "", column))
    try:
        previous = service.report(window, "previous", config)
    except NotFoundError:
        previous = None
    if previous is not None:
        out.append(_dataset(deployment, previous, "previous"))
        if previous.prediction is not None:
            out.append(_column(deployment, "prediction_drift", "previous", previous.prediction))
    out += quality(deployment, window, config)
    out += degenerate(deployment, window, config)
    return out


def _judged(f: FeatureDrift) -> str:
    if not f.evaluable:
        return f"not evaluable: {f.note}"
    if f.is_p_value:
        return f"{f.method} p = {f.p_value:.3g} (drift under {f.threshold:.3g})"
    return f"{f.method} {f.statistic:.3g} (drift from {f.threshold:.3g})"


def _feature(deployment: str, f: FeatureDrift) -> Signal:
    return _column(deployment, "feature_drift", f.feature, f)


def _column(deployment: str, rule: str, subject: str, f: FeatureDrift) -> Signal:
    what = {"feature_drift": f"feature {f.feature!r}", "prediction_drift": "the predictions",
            "multivariate_drift": "the inputs together (reconstruction error)"}[rule]  # fmt: skip
    against = " against the previous window" if subject == "previous" else ""
    verb = "drifted" if f.drifted else "is stable"
    return Signal(
        deployment,
        rule,
        subject,
        f.drifted,
        f"{what} {verb}{against}: {_judged(f)}",
        # the statistic whatever the test (relevo_drift_score): a p-value would read the other
        # way round, and its column's test changes with the window's size; a test's level is
        # no threshold of its statistic (the message says how it was judged)
        value=_finite(f.statistic),
        threshold=None if f.is_p_value else f.threshold,
        evaluable=f.evaluable,
    )


def _dataset(deployment: str, report: DriftReport, subject: str) -> Signal:
    share = report.drifted_share
    against = " against the previous window" if subject == "previous" else ""
    judged = len(report.evaluable_features)
    names = ", ".join(report.drifted_features) or "none"
    return Signal(
        deployment,
        "dataset_drift",
        subject,
        report.dataset_drift,
        f"{len(report.drifted_features)} of {judged} features drifted{against} ({names}); "
        f"dataset drift from {report.dataset_share:.0%}",
        value=None if math.isnan(share) else share,
        threshold=report.dataset_share,
        evaluable=judged > 0,
    )


def quality(deployment: str, window: Window, config: DriftConfig) -> list[Signal]:
    """Missing, out-of-range and unseen values per feature; rejected rows."""
    limits = config.quality
    reference = window.reference.inputs.columns
    out = []
    for name, col in window.inputs.columns.items():
        seen = col.count + col.missing
        ref = reference.get(name)
        ref_missing = ref.missing_share if ref is not None else 0.0
        ref_missing = 0.0 if math.isnan(ref_missing) else ref_missing
        problems, values = [], []
        missing = col.missing / seen if seen else 0.0
        values.append((missing - ref_missing) / limits["missing"])
        if missing - ref_missing > limits["missing"]:
            problems.append(f"{missing:.1%} missing (reference {ref_missing:.1%})")
        if isinstance(col, NumericProfile) and col.count:
            outside = (col.below + col.above) / col.count
            values.append(outside / limits["out_of_range"])
            if outside > limits["out_of_range"]:
                problems.append(f"{outside:.1%} outside the reference's range")
        unseen = window.quality.unseen.get(name)
        if isinstance(col, CategoricalProfile) and unseen is not None and col.count:
            share = unseen.total / col.count
            values.append(share / limits["unseen"])
            if share > limits["unseen"]:
                top = ", ".join(sorted(unseen.top, key=lambda n: -unseen.top[n])[:5])
                problems.append(f"{share:.1%} unseen categories ({top})")
        out.append(
            Signal(
                deployment,
                "data_quality",
                name,
                bool(problems),
                f"{name}: " + ("; ".join(problems) if problems else "within its limits"),
                # the worst of the column's measures, as a share of its own limit
                value=max(values),
                threshold=1.0,
                evaluable=seen >= config.min_rows,
            )
        )
    q = window.quality
    offered = window.rows + q.rejected
    share = q.rejected / offered if offered else 0.0
    reasons = ", ".join(
        f"{r} ({n:,})" for r, n in sorted(q.reasons.items(), key=lambda kv: -kv[1])[:3]
    )
    out.append(
        Signal(
            deployment,
            "data_quality",
            "rows",
            share > limits["rejected"],
            f"{q.rejected:,} of {offered:,} rows rejected by validation ({share:.1%})"
            + (f": {reasons}" if reasons else ""),
            value=share,
            threshold=limits["rejected"],
            evaluable=offered >= config.min_rows,
        )
    )
    return out


def degenerate(deployment: str, window: Window, config: DriftConfig) -> list[Signal]:
    """NaN outputs, a constant score, a single predicted class."""
    out = []
    nan = window.quality.nan_outputs
    out.append(
        Signal(
            deployment,
            "degenerate_output",
            "nan_outputs",
            nan > 0,
            f"{nan:,} of {window.rows:,} outputs were NaN",
            value=float(nan),
            threshold=0.0,
            severity="critical",
        )
    )
    if not window.prediction.columns:
        return out
    name = next(iter(window.prediction.columns))
    col = window.prediction.columns[name]
    ref = window.reference.prediction.columns.get(name)
    enough = col.count >= config.min_rows
    if isinstance(col, NumericProfile) and isinstance(ref, NumericProfile):
        constant = enough and col.max == col.min and ref.max > ref.min
        out.append(
            Signal(
                deployment,
                "degenerate_output",
                "constant_score",
                constant,
                f"every score was {col.min:.6g}" if constant else "scores vary",
                value=col.std if col.count > 1 else None,
                threshold=0.0,
                evaluable=enough,
                severity="critical",
            )
        )
        # a binary classifier's scores are P(positive): its label flips at 0.5
        if (
            ref.sample.size
            and window.reference.prediction.columns
            and ref.min >= 0
            and ref.max <= 1
        ):
            positive = float(np.mean(ref.sample >= 0.5))
            one_sided = col.max < 0.5 or col.min >= 0.5
            side = 1 - positive if col.max < 0.5 else positive
            improbable = 0 < side < 1 and side**col.count < SINGLE_CLASS_ALPHA
            single = enough and one_sided and improbable
            label = "negative" if col.max < 0.5 else "positive"
            out.append(
                Signal(
                    deployment,
                    "degenerate_output",
                    "single_class",
                    single,
                    f"every one of {col.count:,} rows was predicted {label}"
                    if single
                    else "both classes predicted, or too few rows to tell",
                    value=side,
                    threshold=SINGLE_CLASS_ALPHA,
                    evaluable=enough,
                    severity="critical",
                )
            )
    elif isinstance(col, CategoricalProfile) and isinstance(ref, CategoricalProfile):
        classes = [c for c, n in col.counts.items() if n > 0]
        share = (
            ref.counts.get(classes[0], 0) / ref.count if len(classes) == 1 and ref.count else 1.0
        )
        single = (
            enough
            and len(classes) == 1
            and len(ref.counts) > 1
            and share**col.count < SINGLE_CLASS_ALPHA
        )
        out.append(
            Signal(
                deployment,
                "degenerate_output",
                "single_class",
                single,
                f"every one of {col.count:,} rows was predicted {classes[0]!r}"
                if single
                else "several classes predicted, or too few rows to tell",
                value=float(len(classes)),
                threshold=1.0,
                evaluable=enough,
                severity="critical",
            )
        )
    return out


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
