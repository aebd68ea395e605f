"""The shadow worker's queue is bounded in rows: beyond it, rows are dropped and counted."""

from __future__ import annotations

import contextlib
import gc
import time
import tracemalloc
from types import SimpleNamespace

import numpy as np
from prometheus_client import CollectorRegistry

from relevo.datasets import CHURN_FEATURES, make_churn
from relevo.serving.metrics import ServingMetrics
from relevo.serving.shadow import Job, ShadowWorker
from relevo.serving.validation import Plan, Policy, validate_rows


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


class _Tally:
    def __init__(self) -> None:
        self.failed_rows: list[tuple[str, tuple[str, int], str, int]] = []

    def failed(self, deployment, model, role, n) -> None:
        self.failed_rows.append((deployment, model, role, n))


class _Profiles:
    """Records what the worker hands to the production profiles."""

    def __init__(self) -> None:
        self.tally = _Tally()
        self.handed: list[tuple[str, tuple[str, int], list]] = []

    def shadow(self, deployment, model, outputs) -> None:
        self.handed.append((deployment, model, list(outputs)))


def test_scored_outputs_reach_the_profiles_in_one_hand_off_per_second_and_all_at_the_stop():
    """Each hand-off costs the profiles a bucket update in the log's writer thread: handed per
    request they starved the server's event loop (a c=32 p99 of 1.1 s), so the worker hands
    what it scored at most once a second, and whatever is left when it stops."""
    import asyncio

    from relevo.registry.signature import ColumnSpec, Signature
    from relevo.serving.shadow import PROFILE_EVERY_S
    from relevo.serving.validation import validate_rows

    scorer = _Scorer()

    class Endpoint:
        deployment = _Deployment()
        runners = (scorer, scorer)

    signature = Signature((ColumnSpec("x", "number"),))
    profiles = _Profiles()
    worker = ShadowWorker(_Store(), Policy(), capacity_rows=100, metrics=None)  # type: ignore[arg-type]
    worker.profiles = profiles  # type: ignore[assignment]
    now = [100.0]
    worker.clock = lambda: now[0]
    endpoint = Endpoint()

    def job(values: list[float], tag: str) -> Job:
        rows = [{"x": v} for v in values]
        ids = [f"{tag}-{i}" for i in range(len(values))]
        return Job(endpoint, rows, validate_rows(rows, signature), np.arange(len(values)), ids)  # type: ignore[arg-type]

    worker._score([job([1.0, 2.0], "a"), job([13.0], "b")])  # b fails alone
    now[0] += PROFILE_EVERY_S / 2
    worker._score([job([3.0], "c")])
    assert profiles.handed == []  # less than a second since the first scored row
    assert profiles.tally.failed_rows == [("churn", ("churn-gbm", 1), "shadow", 1)]
    now[0] += PROFILE_EVERY_S / 2
    worker._score([job([4.0], "d")])
    assert profiles.handed == [
        ("churn", ("churn-gbm", 1), [{"y": 2.0}, {"y": 4.0}, {"y": 6.0}, {"y": 8.0}])
    ]

    worker._score([job([5.0], "e")])  # then the worker stops: nothing scored is left behind

    async def stop() -> None:
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(stop())
    assert profiles.handed[1:] == [("churn", ("churn-gbm", 1), [{"y": 10.0}])]
    assert (worker.scored, worker.failed) == (5, 1)


def test_a_running_worker_hands_what_it_scored_to_the_profiles_once_no_row_comes(monkeypatch):
    import asyncio

    from relevo.registry.signature import ColumnSpec, Signature
    from relevo.serving import shadow
    from relevo.serving.validation import validate_rows

    monkeypatch.setattr(shadow, "PROFILE_EVERY_S", 0.05)
    monkeypatch.setattr(shadow, "GATHER_S", 0.0)
    scorer = _Scorer()

    class Endpoint:
        deployment = _Deployment()
        runners = (scorer, scorer)

    profiles = _Profiles()
    worker = ShadowWorker(_Store(), Policy(), capacity_rows=100, metrics=None)  # type: ignore[arg-type]
    worker.profiles = profiles  # type: ignore[assignment]
    rows = [{"x": 1.5}]
    validated = validate_rows(rows, Signature((ColumnSpec("x", "number"),)))

    async def serve() -> list:
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0)
        assert worker.offer(Job(Endpoint(), rows, validated, np.arange(1), ["a"]))  # type: ignore[arg-type]
        for _ in range(500):  # the worker is still running: no stop hands them over
            if profiles.handed:
                break
            await asyncio.sleep(0.01)
        handed = list(profiles.handed)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return handed

    assert asyncio.run(serve()) == [("churn", ("churn-gbm", 1), [{"y": 3.0}])]


def test_rows_offered_while_a_gathering_is_scored_wait_for_the_next_gathering(monkeypatch):
    """A quiet server sends one request at a time: the rows mirrored while the previous
    gathering is being scored must gather again, not be scored one request per call (which
    put a shadow model call and a store insert right behind nearly every answer)."""
    import asyncio
    import threading

    from relevo.registry.signature import ColumnSpec, Signature
    from relevo.serving import shadow
    from relevo.serving.validation import validate_rows

    monkeypatch.setattr(shadow, "GATHER_S", 60.0)  # only a full batch ends a gathering here
    monkeypatch.setattr(shadow, "BATCH_ROWS", 3)
    scorer = _Scorer()
    release = threading.Event()
    first_call = threading.Event()
    plain_run = scorer.run

    def run(part, n):
        first_call.set()
        release.wait(10)
        return plain_run(part, n)

    scorer.run = run  # type: ignore[method-assign]

    class Endpoint:
        deployment = _Deployment()
        runners = (scorer, scorer)

    signature = Signature((ColumnSpec("x", "number"),))
    worker = ShadowWorker(_Store(), Policy(), capacity_rows=100, metrics=None)  # type: ignore[arg-type]
    endpoint = Endpoint()

    def job(x: float) -> Job:
        rows = [{"x": x}]
        return Job(endpoint, rows, validate_rows(rows, signature), np.arange(1), [f"id{x}"])  # type: ignore[arg-type]

    async def scenario() -> None:
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0)
        for x in (1.0, 2.0, 3.0):  # a full batch: scored at once
            worker.offer(job(x))
        await asyncio.to_thread(first_call.wait, 10)
        worker.offer(job(4.0))  # arrives while the first gathering is being scored
        release.set()
        while worker.queued_rows > 1:  # the first gathering is done
            await asyncio.sleep(0.01)
        for _ in range(20):  # let the worker act on row 4 if it were going to score it alone
            await asyncio.sleep(0.01)
        assert scorer.calls == [3]
        worker.offer(job(5.0))
        worker.offer(job(6.0))  # row 4 gathered with 5 and 6: a full batch again
        while worker.queued_rows:
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert scorer.calls == [3, 3]


def test_a_queued_job_keeps_only_its_mirrored_rows(rv, churn_pipeline, churn_frame):
    """The bound counts mirrored rows: a job of a 1,000-row request with one row mirrored must
    not keep the other 999 alive (100 such jobs held 62.6 MB, 1/mirror times the bound)."""
    version = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    plan = Plan(version.signature)
    worker = ShadowWorker(rv.store, Policy(), capacity_rows=100, metrics=None)
    worker.running = True  # as in a server whose shadow has fallen behind (slow or hung)
    endpoint = SimpleNamespace(deployment=SimpleNamespace(name="churn"), runners=())
    frame = make_churn(1000, seed=1)[["customer_id", *CHURN_FEATURES]]
    base = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")

    tracemalloc.start()
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    accepted = 0
    for r in range(100):  # 100 requests of 1,000 rows, mirror ~0.001: one row mirrored each
        rows = [dict(row) for row in base]
        validated = validate_rows(rows, plan, "customer_id")
        ids = [f"{r:06d}{i:06d}" for i in range(len(rows))]
        accepted += worker.offer(Job(endpoint, rows, validated, np.array([0]), ids))
        del rows, validated, ids
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert accepted == 100 and worker.queued_rows == 100  # the bound says: 100 rows queued
    per_row = held / worker.queued_rows
    assert per_row < 20_000, f"{held / 1e6:.1f} MB held for {worker.queued_rows} queued rows"


def test_a_hung_shadow_holds_up_and_fills_only_its_own_deployments_queue():
    """One worker serves every deployment's shadow: a shadow that hangs in its model call (or
    is slow) held up every other deployment's mirrored rows behind it, and once its backlog
    filled the shared queue their new rows were dropped too."""
    import asyncio
    import threading

    from relevo.registry.signature import ColumnSpec, Signature
    from relevo.serving import shadow

    signature = Signature((ColumnSpec("x", "number"),))
    release = threading.Event()

    class Hung(_Scorer):
        def run(self, part, n):
            release.wait(30)
            return super().run(part, n)

    def endpoint(name: str, scorer: _Scorer) -> object:
        deployment = SimpleNamespace(name=name)
        return SimpleNamespace(deployment=deployment, runners=(scorer, scorer))

    hung, quick = endpoint("hung", Hung()), endpoint("quick", _Scorer())
    registry = CollectorRegistry()
    store = _Store()
    worker = ShadowWorker(store, Policy(), capacity_rows=4, metrics=ServingMetrics(registry))  # type: ignore[arg-type]

    def job(where: object, tag: str, n: int = 2) -> Job:
        rows = [{"x": float(i)} for i in range(n)]
        ids = [f"{tag}-{i}" for i in range(n)]
        return Job(where, rows, validate_rows(rows, signature), np.arange(n), ids)  # type: ignore[arg-type]

    def count(deployment: str, outcome: str) -> float | None:
        labels = {"deployment": deployment, "model": "churn-gbm:1", "outcome": outcome}
        return registry.get_sample_value("relevo_shadow_rows_total", labels)

    async def scenario() -> None:
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0)
        try:
            assert worker.offer(job(hung, "h0"))  # its model call hangs
            assert worker.offer(job(hung, "h1"))
            assert not worker.offer(job(hung, "h2"))  # its own queue is full: dropped
            for k in range(4):  # the other deployment's shadow goes on, its queue untouched
                assert worker.offer(job(quick, f"q{k}")), f"quick request {k} dropped"
                deadline = time.monotonic() + 10 * shadow.GATHER_S
                while len(store.shadows.rows) < 2 * (k + 1):
                    assert time.monotonic() < deadline, "the quick shadow waits for the hung one"
                    await asyncio.sleep(0.01)
        finally:
            release.set()
        while worker.queued_rows:
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(scenario(), 30))
    stored = [r.id for r in store.shadows.rows]
    assert stored[:8] == [f"q{k}-{i}" for k in range(4) for i in range(2)]
    assert sorted(stored[8:]) == ["h0-0", "h0-1", "h1-0", "h1-1"]
    assert count("hung", "dropped") == 2 and count("quick", "dropped") is None
    assert count("quick", "scored") == 8 and count("hung", "scored") == 4


def test_a_shadows_model_calls_are_counted_under_its_name_in_the_batch_histogram():
    """`relevo_model_batch_rows{model}` counts each model's calls: a shadow scoring hundreds
    of rows showed 0 calls there, as if it were never called."""
    from relevo.registry.signature import ColumnSpec, Signature

    scorer = _Scorer()
    endpoint = SimpleNamespace(deployment=_Deployment(), runners=(scorer, scorer))
    registry = CollectorRegistry()
    worker = ShadowWorker(_Store(), Policy(), capacity_rows=100, metrics=ServingMetrics(registry))  # type: ignore[arg-type]
    signature = Signature((ColumnSpec("x", "number"),))
    jobs = []
    for k, values in enumerate([[1.0, 2.0], [13.0], [3.0, 4.0, 5.0]]):
        rows = [{"x": v} for v in values]
        ids = [f"r{k}-{i}" for i in range(len(values))]
        jobs.append(
            Job(endpoint, rows, validate_rows(rows, signature), np.arange(len(values)), ids)
        )  # type: ignore[arg-type]
    worker._score(jobs)

    assert scorer.calls == [6, 2, 1, 3]  # together, then (13 failing) each request alone
    labels = {"model": "churn-gbm:1"}
    assert registry.get_sample_value("relevo_model_batch_rows_count", labels) == 4
    assert registry.get_sample_value("relevo_model_batch_rows_sum", labels) == 12
