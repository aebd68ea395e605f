"""A stopping server does not wait on a database that does not answer to release its
evaluators' leases: in an outage the release waited on the database's own timeouts (30 s each
on a locked SQLite file), and the stop outlasted a pod's grace period."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from types import SimpleNamespace

from relevo.monitoring.alerts import evaluator as alerts_evaluator
from relevo.routing import evaluator as rollout_evaluator


class HungStore:
    """Every lease call waits, as on a database that accepts and never answers."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.asked = threading.Event()

    def wait(self, *args: object) -> bool:
        self.asked.set()
        self.released.wait(60)
        return False


async def _stop_time(run: object, target: object) -> float:
    task = asyncio.create_task(run)  # type: ignore[arg-type]
    await asyncio.sleep(0.3)  # the evaluator's first look fails and is retried
    started = time.monotonic()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return time.monotonic() - started


def test_the_evaluators_stop_within_seconds_when_the_lease_cannot_be_released():
    hung = HungStore()
    rv = SimpleNamespace(deployments=SimpleNamespace(release_evaluator=hung.wait))
    service = SimpleNamespace(release_evaluator=hung.wait)
    try:
        took = asyncio.run(_stop_time(rollout_evaluator.run(rv, 0.05), rv))  # type: ignore[arg-type]
        assert hung.asked.is_set()  # the release was tried
        assert took < rollout_evaluator.RELEASE_WAIT_S + 1.5, took
        hung.asked.clear()
        took = asyncio.run(_stop_time(alerts_evaluator.run(service, 0.05), service))  # type: ignore[arg-type]
        assert hung.asked.is_set()
        assert took < rollout_evaluator.RELEASE_WAIT_S + 1.5, took
    finally:
        hung.released.set()
