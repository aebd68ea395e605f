"""The prediction log's promises: bounded memory, back-pressure, retries, nothing lost on close."""

from __future__ import annotations

import asyncio
import threading
import time

import orjson
import pytest

from relevo.errors import UnavailableError
from relevo.serving.log import LogEntry, PredictionLog


def _entry(n: int, start: int = 0) -> LogEntry:
    ids = [f"{start + i:032x}" for i in range(n)]
    rows = [{"x": start + i} for i in range(n)]
    outputs = [{"probability": 0.5} for _ in range(n)]
    return LogEntry("churn", "churn", 1, time.time(), ids, rows, outputs, 1.5, None)


class SlowStore:
    """A store that writes slowly and fails the first `failures` writes."""

    def __init__(self, delay: float = 0.0, failures: int = 0) -> None:
        self.delay = delay
        self.failures = failures
        self.rows: list[dict] = []
        self.calls = 0
        self.gate = threading.Event()
        self.gate.set()

    def write(self, rows: list[dict]) -> int:
        self.calls += 1
        self.gate.wait()
        time.sleep(self.delay)
        if self.failures:
            self.failures -= 1
            raise OSError("database went away")
        self.rows.extend(rows)
        return len(rows)


def test_close_writes_everything_accepted():
    store = SlowStore()
    log = PredictionLog(store.write, flush_interval_s=10.0, flush_rows=1000)
    for k in range(50):
        log.put_blocking(_entry(3, start=k * 3))
    log.close()
    assert len(store.rows) == 150
    assert len({r["id"] for r in store.rows}) == 150
    assert orjson.loads(store.rows[7]["features"]) == {"x": 7}
    assert log.depth == 0


def test_failed_writes_are_retried_not_dropped():
    store = SlowStore(failures=3)
    log = PredictionLog(store.write, flush_interval_s=0.01)
    log.put_blocking(_entry(10))
    log.close()
    assert len(store.rows) == 10
    assert store.calls == 4
    assert log.errors == 3


def test_a_full_queue_makes_callers_wait_instead_of_growing():
    store = SlowStore()
    store.gate.clear()  # the store hangs: nothing drains
    log = PredictionLog(
        store.write, capacity_rows=20, flush_rows=10, flush_interval_s=0.01, wait_timeout_s=5
    )

    async def scenario() -> float:
        await log.put(_entry(10))
        await log.put(_entry(10, start=10))
        assert log.depth == 20
        started = time.monotonic()
        threading.Timer(0.3, store.gate.set).start()  # the store comes back
        await log.put(_entry(5, start=20))  # waits for room
        return time.monotonic() - started

    waited = asyncio.run(scenario())
    assert waited >= 0.25
    log.close()
    assert len(store.rows) == 25


def test_a_store_that_never_comes_back_is_a_clear_503():
    store = SlowStore()
    store.gate.clear()
    log = PredictionLog(store.write, capacity_rows=5, flush_interval_s=0.01, wait_timeout_s=0.3)

    async def scenario() -> None:
        await log.put(_entry(5))
        with pytest.raises(UnavailableError, match="prediction log is full"):
            await log.put(_entry(1, start=5))

    asyncio.run(scenario())
    assert log.depth == 5  # what was accepted is still held
    store.gate.set()
    log.close()
    assert len(store.rows) == 5


def test_an_entry_larger_than_the_queue_is_still_accepted():
    store = SlowStore()
    log = PredictionLog(store.write, capacity_rows=10, flush_rows=10)
    log.put_blocking(_entry(25))
    log.close()
    assert len(store.rows) == 25


def test_closed_log_refuses_new_entries():
    log = PredictionLog(SlowStore().write)
    log.close()
    with pytest.raises(UnavailableError):
        log.put_blocking(_entry(1))
