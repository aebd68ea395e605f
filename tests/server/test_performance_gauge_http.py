"""Model performance on /metrics over real HTTP: the value each "performance" signal carries
(subject = metric) becomes `relevo_model_performance{deployment,metric}`."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from relevo.server.background import BackgroundServer


def _performance(url: str) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (s.labels["deployment"], s.labels["metric"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "relevo_model_performance"
    }


def test_performance_signals_reach_metrics_with_their_values(
    deployed, server_settings, monkeypatch
):
    from relevo.monitoring.alerts import providers
    from relevo.monitoring.signals import Signal

    def performance(rv, deployment, now):
        return [
            Signal(deployment, "performance", "roc_auc", False, "roc_auc 0.83", 0.83, 0.7),
            Signal(deployment, "performance", "precision", True, "precision 0.41", 0.41, 0.5),
            Signal(
                deployment,
                "performance",
                "recall",
                False,
                "recall: no mature window with enough labels yet",
                threshold=0.5,
                evaluable=False,
            ),
        ]

    monkeypatch.setattr(providers, "PROVIDERS", [*providers.PROVIDERS, performance])
    settings = server_settings.model_copy(update={"monitor_interval_s": 0})
    server = BackgroundServer(settings)
    url = server.start()
    try:
        assert httpx.post(f"{url}/v1/alerts/evaluate").status_code == 200
        found = _performance(url)
        assert found[("churn", "roc_auc")] == 0.83
        assert found[("churn", "precision")] == 0.41
        assert ("churn", "recall") not in found  # no value yet: no sample, not a made-up 0
    finally:
        server.stop()
