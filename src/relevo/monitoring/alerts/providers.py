"""The providers the evaluator asks for signals, in order. A provider is
`(relevo, deployment, now) -> list[Signal]` (see `relevo.monitoring.signals`); other parts of
monitoring (drift, data quality, feedback) append theirs here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from relevo.context import Relevo
from relevo.feedback import signals as feedback_signals
from relevo.monitoring import drift_signals
from relevo.monitoring.alerts import health, traffic
from relevo.monitoring.signals import Signal

Provider = Callable[[Relevo, str, datetime], list[Signal]]

PROVIDERS: list[Provider] = [
    traffic.signals,
    health.model_errors,
    health.latency_p99,
    health.rollout_gate,
    drift_signals.signals,
    feedback_signals.signals,
]

#: rules whose every subject a provider names each time it runs for a deployment (a waiting
#: subject as not evaluable): an open alert of such a rule whose subject it no longer names
#: (a business threshold removed) is no longer measured, and resolves
OWNS: dict[Provider, frozenset[str]] = {feedback_signals.signals: frozenset({"performance"})}
