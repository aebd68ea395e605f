"""The shadow worker: scores mirrored rows with a shadow challenger off the hot path.

The predictor answers with the champion first and only then offers the mirrored rows here
(`offer` never waits). The worker scores them in a thread of its own, one job at a time, and
stores each output (or the error) under the prediction's id. Its queue is bounded in rows:
when the challenger falls behind, new rows are dropped and counted
(`relevo_shadow_rows_total{outcome="dropped"}`), never queued without bound. A shadow's errors
and slowness therefore never reach a caller. Rows still queued when the server stops are lost
(they are a comparison, not an answer).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import orjson

from relevo.serving.metrics import ServingMetrics
from relevo.serving.pool import Endpoint
from relevo.serving.profiling import ProfileBuilder
from relevo.serving.validation import Policy, Validated
from relevo.store import Store
from relevo.store.shadows import ShadowRow

log = logging.getLogger(__name__)


class Job(NamedTuple):
    endpoint: Endpoint
    rows: Any
    validated: Validated
    idx: np.ndarray
    ids: list[str]


class ShadowWorker:
    """A bounded queue of mirrored rows and the task that scores and stores them."""

    def __init__(
        self, store: Store, policy: Policy, capacity_rows: int, metrics: ServingMetrics | None
    ) -> None:
        self.store = store
        self.policy = policy
        self.capacity_rows = capacity_rows
        self.metrics = metrics
        self._jobs: deque[Job] = deque()
        self._queued_rows = 0
        self._wake = asyncio.Event()
        self.scored = self.failed = self.dropped = 0
        #: production profiles: the shadow's outputs are profiled under role "shadow"
        self.profiles: ProfileBuilder | None = None
        #: only a server runs the worker; elsewhere (batch scoring) nothing is mirrored
        self.running = False

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def offer(self, job: Job) -> bool:
        """Queue the job's rows for the shadow, or drop and count them when the queue is full."""
        if not self.running:
            return False
        n = int(job.idx.size)
        if self._queued_rows + n > self.capacity_rows:
            self.dropped += n
            self._count(job.endpoint, "dropped", n)
            return False
        self._jobs.append(job)
        self._queued_rows += n
        self._wake.set()
        return True

    async def run(self) -> None:
        """Score queued jobs until cancelled."""
        self.running = True
        try:
            await self._loop()
        finally:
            self.running = False

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._jobs:
                job = self._jobs.popleft()
                try:
                    await self._score(job)
                except Exception as exc:  # storing failed: the comparison loses these rows
                    log.warning("storing shadow outputs failed: %s", exc)
                finally:
                    self._queued_rows -= int(job.idx.size)

    async def _score(self, job: Job) -> None:
        from relevo.serving.predictor import _subset  # the predictor imports this module

        endpoint = job.endpoint
        runner = endpoint.runners[1]
        started = time.perf_counter()
        outputs: list[Any] | None = None
        error: str | None = None
        try:
            part = _subset(job.rows, job.validated, job.idx, runner, endpoint, self.policy)
            outputs = await asyncio.to_thread(runner.run, (part.numbers, part.others), part.n)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:1000]
        latency = (time.perf_counter() - started) * 1000.0
        now = datetime.now(UTC)
        version = runner.version
        picks = job.idx.tolist()
        rows = [
            ShadowRow(
                job.ids[i],
                endpoint.deployment.name,
                version.name,
                version.version,
                now,
                None if outputs is None else orjson.dumps(outputs[k]).decode(),
                error,
                latency,
            )
            for k, i in enumerate(picks)
        ]
        n = len(rows)
        if outputs is None:
            self.failed += n
            self._count(endpoint, "failed", n)
            if self.profiles is not None:
                model = (version.name, version.version)
                self.profiles.tally.failed(endpoint.deployment.name, model, "shadow", n)
        else:
            self.scored += n
            self._count(endpoint, "scored", n)
            if self.profiles is not None:
                self.profiles.shadow(
                    endpoint.deployment.name, (version.name, version.version), outputs
                )
        await asyncio.to_thread(self.store.shadows.insert_many, rows)

    def _count(self, endpoint: Endpoint, outcome: str, n: int) -> None:
        if self.metrics is not None and len(endpoint.runners) > 1:
            ref = endpoint.runners[1].ref
            self.metrics.shadow_rows.labels(endpoint.deployment.name, ref, outcome).inc(n)
