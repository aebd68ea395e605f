"""The "performance" alert provider: business thresholds judged on mature windows.

One signal per threshold of the deployment's "feedback" settings (subject = the metric), on
the champion's latest mature window with enough labels; not evaluable while there is none, so
the alert engine keeps its previous state and never fires on half-arrived labels.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING

from relevo.feedback.performance import feedback_config
from relevo.feedback.service import PerformanceService
from relevo.monitoring.signals import Signal

if TYPE_CHECKING:
    from relevo.context import Relevo

#: how far back the provider looks for mature windows, beyond the label delay (a window is
#: mature `label_delay_days` after its end, so the look must reach at least that far back)
LOOKBACK_DAYS = 30


def signals(rv: Relevo, deployment: str, now: datetime) -> list[Signal]:
    """A "performance" signal per business threshold of `deployment`. Without thresholds, or
    before any label arrived, nothing of the log is read: this runs beside the hot path in
    every server, every monitor interval."""
    config = feedback_config(rv, deployment)
    if not config.thresholds:
        return []
    if not rv.store.labels.count(deployment):
        return [_waiting(deployment, name, limit) for name, limit in config.thresholds.items()]
    days = LOOKBACK_DAYS + math.ceil(max(config.label_delay_days, 0.0))
    report = PerformanceService(rv).performance(deployment, "1d", f"{days}d", now=now)
    out = []
    for check in report.thresholds:
        sign = ">=" if check.higher_is_better else "<="
        if check.breached is None:
            out.append(_waiting(deployment, check.metric, check.threshold))
            continue
        assert check.value is not None and check.window_start is not None
        day = check.window_start.date().isoformat()
        verdict = "breaks" if check.breached else "meets"
        out.append(
            Signal(
                deployment,
                "performance",
                check.metric,
                check.breached,
                f"{check.metric} {check.value:.4f} on predictions of {day} {verdict} the "
                f"business threshold {sign} {check.threshold:g}",
                value=check.value,
                threshold=check.threshold,
            )  # its severity is the rule's (`alerts.performance.severity`, warning by default)
        )
    return out


def _waiting(deployment: str, metric: str, threshold: float) -> Signal:
    return Signal(
        deployment,
        "performance",
        metric,
        False,
        f"{metric}: no mature window with enough labels yet",
        threshold=threshold,
        evaluable=False,
    )
