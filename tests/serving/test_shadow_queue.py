"""The shadow worker's queue is bounded in rows: beyond it, rows are dropped and counted."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry

from relevo.serving.metrics import ServingMetrics
from relevo.serving.shadow import Job, ShadowWorker
from relevo.serving.validation import Policy


class _Runner:
    ref = "churn-gbm:1"


class _Deployment:
    name = "churn"


class _Endpoint:
    deployment = _Deployment()
    runners = (_Runner(), _Runner())


def _job(n: int) -> Job:
    return Job(_Endpoint(), [], None, np.arange(n), [f"id{i}" for i in range(n)])  # type: ignore[arg-type]


def test_rows_beyond_the_queue_are_dropped_and_counted():
    registry = CollectorRegistry()
    worker = ShadowWorker(None, Policy(), capacity_rows=10, metrics=ServingMetrics(registry))  # type: ignore[arg-type]
    assert not worker.offer(_job(4))  # no worker running (batch scoring): nothing is mirrored
    worker.running = True  # as `run` does, without scoring anything yet: the shadow is behind
    assert worker.offer(_job(4)) and worker.offer(_job(6))
    assert worker.queued_rows == 10
    assert not worker.offer(_job(1))
    assert not worker.offer(_job(3))
    assert worker.queued_rows == 10 and worker.dropped == 4
    dropped = registry.get_sample_value(
        "relevo_shadow_rows_total",
        {"deployment": "churn", "model": "churn-gbm:1", "outcome": "dropped"},
    )
    assert dropped == 4
