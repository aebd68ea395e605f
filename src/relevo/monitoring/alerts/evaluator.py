"""The monitoring evaluator: inside a server, every RELEVO_MONITOR_INTERVAL_S seconds, one
replica at a time (it holds the store's `monitoring-evaluator` lease) evaluates the alert
rules of every deployment; every replica then refreshes its gauges from the store, so /metrics
tells the same on each. Transport-free; the server starts `run` in its lifespan."""

from __future__ import annotations

import asyncio
import logging

from relevo.monitoring.alerts.gauges import get_gauges
from relevo.monitoring.alerts.service import AlertService, EvaluationReport
from relevo.routing.evaluator import holder_id, release_lease

log = logging.getLogger("relevo.alerts")


def evaluate_once(service: AlertService, holder: str, ttl_s: float) -> EvaluationReport | None:
    """Take (or renew) the lease and evaluate; None when another replica holds it. The gauges
    are refreshed from the store either way."""
    report = service.evaluate() if service.acquire_evaluator(holder, ttl_s) else None
    refresh_gauges(service)
    return report


def refresh_gauges(service: AlertService) -> None:
    """This process's gauges from the stored states (what every replica reports alike)."""
    repo = service.rv.store.alerts
    get_gauges().refresh(repo.tracks(), repo.open_alerts())


async def run(service: AlertService, interval_s: float) -> None:
    """Evaluate every `interval_s` seconds until cancelled."""
    holder = holder_id()
    ttl = max(10.0, 3 * interval_s)  # a few missed looks before another replica takes over
    try:
        while True:
            try:
                await asyncio.to_thread(evaluate_once, service, holder, ttl)
            except Exception as exc:  # a database hiccup must not end the evaluator
                log.warning("evaluating alerts failed: %s", exc)
            await asyncio.sleep(interval_s)
    finally:
        await release_lease(lambda: service.release_evaluator(holder), "monitoring")
