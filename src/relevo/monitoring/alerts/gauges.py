"""Alert states and drift scores as Prometheus gauges on /metrics:
`relevo_alert_firing{deployment,rule,subject}` (1 firing, 0 not) and
`relevo_drift_score{deployment,feature}` (the latest feature_drift value) and
`relevo_model_performance{deployment,metric}` (the latest "performance" value: the metric on
the champion's latest mature window).

Every server process refreshes them from the store on each evaluator tick, whether or not it
holds the evaluator lease, so every replica and every worker reports the same values; with
several workers the gauges aggregate with `livemax` (the same value from each live worker).
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from relevo.monitoring.alerts.state import Alert, Key, Track

DRIFT_RULE = "feature_drift"
PERFORMANCE_RULE = "performance"


class AlertGauges:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.firing = Gauge(
            "relevo_alert_firing",
            "1 while an alert fires, 0 once it is clear, by deployment, rule and subject.",
            ["deployment", "rule", "subject"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.drift = Gauge(
            "relevo_drift_score",
            "The latest drift statistic of each input feature against the reference.",
            ["deployment", "feature"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.performance = Gauge(
            "relevo_model_performance",
            "The latest value of each business metric with a threshold, on the champion's "
            "latest mature window with enough labels.",
            ["deployment", "metric"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self._firing_keys: set[tuple[str, str, str]] = set()
        self._drift_keys: set[tuple[str, str]] = set()
        self._performance_keys: set[tuple[str, str]] = set()

    def refresh(self, tracks: Mapping[Key, Track], open_alerts: Mapping[Key, Alert]) -> None:
        """Set every gauge from the stored tracks and firing alerts; labels that vanished go
        to 0 (a multiprocess gauge cannot drop a label)."""
        firing: dict[tuple[str, str, str], float] = {}
        drift: dict[tuple[str, str], float] = {}
        performance: dict[tuple[str, str], float] = {}
        for (dep, rule, subject), track in tracks.items():
            firing[(dep or "", rule, subject)] = 0.0
            if rule == DRIFT_RULE and track.value is not None and dep:
                drift[(dep, subject)] = float(track.value)
            if rule == PERFORMANCE_RULE and track.value is not None and dep:
                performance[(dep, subject)] = float(track.value)
        for (dep, rule, subject), alert in open_alerts.items():
            if alert.firing:
                firing[(dep or "", rule, subject)] = 1.0
        for key in self._firing_keys - firing.keys():
            firing[key] = 0.0
        for dkey in self._drift_keys - drift.keys():
            drift[dkey] = 0.0
        for pkey in self._performance_keys - performance.keys():
            performance[pkey] = 0.0
        for key, value in firing.items():
            self.firing.labels(*key).set(value)
        for dkey, value in drift.items():
            self.drift.labels(*dkey).set(value)
        for pkey, value in performance.items():
            self.performance.labels(*pkey).set(value)
        self._firing_keys = set(firing)
        self._drift_keys = set(drift)
        self._performance_keys = set(performance)


_gauges: AlertGauges | None = None


def get_gauges() -> AlertGauges:
    """The process's gauges (registered on first use; Prometheus names are process-global)."""
    global _gauges
    if _gauges is None:
        _gauges = AlertGauges()
    return _gauges
