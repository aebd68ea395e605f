"""`Signal`: one observation an alert rule judges, the common currency between the parts of
monitoring that measure (drift, data quality, traffic volume, errors, latency, rollout gates,
performance against business thresholds) and the alert engine that turns observations into
firing and resolved alerts, deduplicated, grouped and notified.

A measuring part is a *provider*: a function `(relevo, deployment, now) -> list[Signal]`. It
says what it saw; persistence ("N of M windows"), silences and notification are the engine's.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Signal:
    #: the deployment observed (None: the whole server, e.g. a replica gone silent)
    deployment: str | None
    #: the rule's name: "feature_drift", "dataset_drift", "prediction_drift", "data_quality",
    #: "no_predictions", "degenerate_output", "model_errors", "latency_p99", "rollout_gate",
    #: "performance", ...
    rule: str
    #: what within the deployment: a feature, a metric, a replica; "" when nothing finer
    subject: str
    #: the observation breaks the rule (before persistence and silences)
    firing: bool
    message: str
    value: float | None = None
    threshold: float | None = None
    #: "warning" or "critical"
    severity: str = "warning"
    #: False when there was too little data to judge: the engine keeps the previous state
    evaluable: bool = True
