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


class _Version:
    name = "churn-gbm"
    version = 1


class _Scorer:
    """A challenger that doubles x and fails on any batch holding x == 13."""

    ref = "churn-gbm:1"
    version = _Version()

    def __init__(self) -> None:
        self.calls: list[int] = []

    def same_input(self, other: object) -> bool:
        return True

    def run(self, part, n):
        numbers, _others = part
        self.calls.append(n)
        if (numbers == 13).any():
            raise ValueError("thirteen")
        return [{"y": float(v) * 2} for v in numbers[:, 0]]


class _Shadows:
    def __init__(self) -> None:
        self.rows: list = []

    def insert_many(self, rows) -> int:
        self.rows.extend(rows)
        return len(rows)


class _Store:
    def __init__(self) -> None:
        self.shadows = _Shadows()


def test_gathered_rows_are_scored_together_and_a_failing_request_fails_only_itself():
    from relevo.registry.signature import ColumnSpec, Signature
    from relevo.serving.validation import validate_rows

    scorer = _Scorer()

    class Endpoint:
        deployment = _Deployment()
        runners = (scorer, scorer)

    plan_signature = Signature((ColumnSpec("x", "number"),))
    store = _Store()
    worker = ShadowWorker(store, Policy(), capacity_rows=100, metrics=None)  # type: ignore[arg-type]
    endpoint = Endpoint()  # one deployment's requests share it
    jobs = []
    for k, values in enumerate([[1.0, 2.0], [13.0], [3.0, 4.0, 5.0]]):
        rows = [{"x": v} for v in values]
        ids = [f"r{k}-{i}" for i in range(len(values))]
        validated = validate_rows(rows, plan_signature)
        jobs.append(Job(endpoint, rows, validated, np.arange(len(values)), ids))  # type: ignore[arg-type]
    worker._score(jobs)

    assert scorer.calls == [6, 2, 1, 3]  # all gathered rows at once; it failed: each alone
    stored = {r.id: r for r in store.shadows.rows}
    assert set(stored) == {"r0-0", "r0-1", "r1-0", "r2-0", "r2-1", "r2-2"}
    assert [stored[f"r2-{i}"].output for i in range(3)] == ['{"y":6.0}', '{"y":8.0}', '{"y":10.0}']
    assert stored["r0-1"].output == '{"y":4.0}' and stored["r0-1"].error is None
    assert stored["r1-0"].output is None and "thirteen" in stored["r1-0"].error
    assert (worker.scored, worker.failed) == (5, 1)
