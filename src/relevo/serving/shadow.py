"""The shadow worker: scores mirrored rows with a shadow challenger off the hot path.

The predictor answers with the champion first and only then offers the mirrored rows here
(`offer` never waits). The worker lets the rows of many requests gather (up to `GATHER_S`, or
until `BATCH_ROWS` are queued), scores them in a worker thread with one model call and stores
every output (or the error) under its prediction's id with one insert: per request, the shadow
would double the model calls and add a store commit right behind every answer, competing with
the next request for the GIL and, on a small machine, for the cores. Each deployment has a
queue (a lane) and a task of its own, bounded in rows: when its challenger falls behind, its new
rows are dropped and counted (`relevo_shadow_rows_total{outcome="dropped"}`), never queued
without bound, and a slow or hung shadow of one deployment never holds up or fills the queue of
another's. A shadow's errors and slowness therefore never reach a caller. Rows still queued when
the server stops are lost (they are a comparison, not an answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import orjson

from relevo.serving.frames import merge_parts
from relevo.serving.metrics import ServingMetrics
from relevo.serving.native_threads import one_native_thread
from relevo.serving.pool import Endpoint
from relevo.serving.profiling import ProfileBuilder
from relevo.serving.runner import ModelRunner
from relevo.serving.validation import Policy, Validated, take_rows
from relevo.store import Store
from relevo.store.shadows import ShadowRow

log = logging.getLogger(__name__)

#: rows scored by one model call and stored by one insert, at most
BATCH_ROWS = 512
#: how long mirrored rows gather at most before the worker scores them (it starts at once when
#: `BATCH_ROWS` are queued). Long enough that a quiet server (one request at a time) scores
#: and stores hundreds of rows per gathering, not a few: at 20 ms its c=1 p50 grew by ~0.26 ms
#: with a shadow, each gathering's model call and commit landing on the next answers' path
GATHER_S = 0.25
#: scored outputs are handed to the production profiles at most this often (see `_hand`)
PROFILE_EVERY_S = 1.0


class Job(NamedTuple):
    endpoint: Endpoint
    rows: Any
    validated: Validated
    idx: np.ndarray
    ids: list[str]


class _Lane:
    """One deployment's mirrored rows waiting for its shadow, and the task that scores them."""

    def __init__(self) -> None:
        self.jobs: deque[Job] = deque()
        #: rows queued or being scored (the bound), and rows queued and not taken yet
        self.queued_rows = 0
        self.waiting_rows = 0
        self.wake = asyncio.Event()
        #: set when a full batch is queued: the gathering ends early
        self.full = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class ShadowWorker:
    """Bounded queues of mirrored rows, one per deployment, and the tasks that score and
    store them."""

    def __init__(
        self, store: Store, policy: Policy, capacity_rows: int, metrics: ServingMetrics | None
    ) -> None:
        self.store = store
        self.policy = policy
        #: rows one deployment may have queued or being scored at most
        self.capacity_rows = capacity_rows
        self.metrics = metrics
        #: by deployment name: one deployment's hung shadow must not stall another's
        self._lanes: dict[str, _Lane] = {}
        #: wakes `run`: a new lane needs its task, or the profiles are due
        self._wake = asyncio.Event()
        self.scored = self.failed = self.dropped = 0
        #: production profiles: the shadow's outputs are profiled under role "shadow"
        self.profiles: ProfileBuilder | None = None
        #: only a server runs the worker; elsewhere (batch scoring) nothing is mirrored
        self.running = False
        #: scored outputs not handed to the profiles yet, by (deployment, model), and since when
        self._unprofiled: dict[tuple[str, tuple[str, int]], list[Any]] = {}
        self._unprofiled_since = 0.0
        #: guards the outputs above and the counts (the lanes score in threads of their own)
        self._profile_lock = threading.Lock()
        self._profile_due = False
        self._profile_timer_handle: asyncio.TimerHandle | None = None
        self.clock = time.monotonic

    @property
    def queued_rows(self) -> int:
        return sum(lane.queued_rows for lane in self._lanes.values())

    def offer(self, job: Job) -> bool:
        """Queue the job's rows for the shadow, or drop and count them when its deployment's
        queue is full."""
        if not self.running:
            return False
        n = int(job.idx.size)
        lane = self._lanes.get(job.endpoint.deployment.name)
        if lane is None:
            lane = self._lanes[job.endpoint.deployment.name] = _Lane()
            self._wake.set()  # `run` starts its task
        if lane.queued_rows + n > self.capacity_rows:
            self.dropped += n
            self._count(job.endpoint, "dropped", n)
            return False
        if n < len(job.ids) and type(job.rows) is list:
            job = self._mirrored_only(job)
        lane.jobs.append(job)
        lane.queued_rows += n
        lane.waiting_rows += n
        lane.wake.set()
        if lane.waiting_rows >= BATCH_ROWS:
            lane.full.set()
        return True

    def _mirrored_only(self, job: Job) -> Job:
        """The job with only its mirrored rows: the queue's bound counts rows, and a job
        holding its whole request would hold 1/mirror times as many."""
        picks = job.idx.tolist()
        rows = [job.rows[i] for i in picks]
        part = take_rows(job.validated, job.idx)
        return Job(job.endpoint, rows, part, np.arange(len(picks)), [job.ids[i] for i in picks])

    async def run(self) -> None:
        """Score queued jobs until cancelled."""
        self.running = True
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                for lane in self._lanes.values():
                    if lane.task is None:
                        lane.task = asyncio.create_task(self._drain(lane))
                if self._profile_due:  # a second since outputs were scored: profile them
                    self._profile_due = False
                    self._hand(force=True)
        finally:
            self.running = False
            if self._profile_timer_handle is not None:
                self._profile_timer_handle.cancel()
                self._profile_timer_handle = None
            tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for lane in self._lanes.values():
                lane.task = None
            self._hand(force=True)

    async def _drain(self, lane: _Lane) -> None:
        """Score one deployment's queued jobs as they come, until cancelled."""
        while True:
            await lane.wake.wait()
            lane.wake.clear()
            if not lane.jobs:
                continue
            # let the mirrored rows of the next requests gather: one model call and one
            # insert per gathering, not per request, and none of it right behind every answer
            if lane.waiting_rows < BATCH_ROWS:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lane.full.wait(), GATHER_S)
            lane.full.clear()
            # score what gathered, then gather again: draining the queue until it is empty
            # scored the rows of each new request as it came, one call each, whenever the
            # previous call had taken about one request's time (a quiet server)
            left = len(lane.jobs)
            while left:
                jobs = self._take(lane, left)
                left -= len(jobs)
                try:
                    await asyncio.to_thread(self._score, jobs)
                except Exception as exc:  # storing failed: the comparison loses these rows
                    log.warning("storing shadow outputs failed: %s", exc)
                finally:
                    lane.queued_rows -= sum(int(job.idx.size) for job in jobs)
            if self._unprofiled and self._profile_timer_handle is None:
                loop = asyncio.get_running_loop()
                self._profile_timer_handle = loop.call_later(PROFILE_EVERY_S, self._profile_timer)

    def _profile_timer(self) -> None:
        self._profile_timer_handle = None
        self._profile_due = True
        self._wake.set()

    def _take(self, lane: _Lane, most: int) -> list[Job]:
        """The lane's next jobs (at most `most`) whose rows fit one batch (at least one)."""
        queue = lane.jobs
        jobs = [queue.popleft()]
        rows = int(jobs[0].idx.size)
        while len(jobs) < most and queue and rows + int(queue[0].idx.size) <= BATCH_ROWS:
            job = queue.popleft()
            jobs.append(job)
            rows += int(job.idx.size)
        lane.waiting_rows -= rows
        return jobs

    def _score(self, jobs: list[Job]) -> None:
        """Score the jobs' rows, one model call per challenger, and store every output (or
        error) in one insert. Runs in a worker thread."""
        one_native_thread()
        groups: dict[int, list[Job]] = {}
        for job in jobs:
            groups.setdefault(id(job.endpoint), []).append(job)
        rows: list[ShadowRow] = []
        for group in groups.values():
            scored: list[Any] = []
            failed = 0
            for job, outputs, error, latency in self._run(group):
                rows.extend(self._rows(job, outputs, error, latency))
                if outputs is None:
                    failed += int(job.idx.size)
                else:
                    scored.extend(outputs)
            self._tally(group[0].endpoint, scored, failed)
        self.store.shadows.insert_many(rows)

    def _tally(self, endpoint: Endpoint, scored: list[Any], failed: int) -> None:
        """Count one gathering's outcomes and queue its outputs for the profiles. The profiles
        fold each hand-off into their bucket with a profile update of its own (~0.3 ms of
        Python in the log's writer thread, holding the GIL): handed per request, they made
        that thread starve the event loop for seconds at every profile flush."""
        version = endpoint.runners[1].version
        model = (version.name, version.version)
        name = endpoint.deployment.name
        if failed:
            with self._profile_lock:
                self.failed += failed
            self._count(endpoint, "failed", failed)
            if self.profiles is not None:
                self.profiles.tally.failed(name, model, "shadow", failed)
        if scored:
            with self._profile_lock:
                self.scored += len(scored)
            self._count(endpoint, "scored", len(scored))
            if self.profiles is not None:
                with self._profile_lock:
                    if not self._unprofiled:
                        self._unprofiled_since = self.clock()
                    self._unprofiled.setdefault((name, model), []).extend(scored)
                self._hand()

    def _hand(self, force: bool = False) -> None:
        """Hand the scored outputs to the profiles, at most once per `PROFILE_EVERY_S` (or
        now: `force`). The profiles stamp them when handed, so a row scored in the last
        second of a profile bucket may be counted in the next one."""
        if self.profiles is None:
            return
        with self._profile_lock:
            if not self._unprofiled or (
                not force and self.clock() - self._unprofiled_since < PROFILE_EVERY_S
            ):
                return
            taken, self._unprofiled = self._unprofiled, {}
        for (name, model), outputs in taken.items():
            self.profiles.shadow(name, model, outputs)

    def _run(self, jobs: list[Job]) -> list[tuple[Job, list[Any] | None, str | None, float]]:
        """Each job with its outputs (or error) and the model call's time in ms: one call for
        all of them; when it fails, each job alone, so one bad job fails only itself."""
        from relevo.serving.predictor import _subset  # the predictor imports this module

        endpoint = jobs[0].endpoint
        runner = endpoint.runners[1]
        started = time.perf_counter()
        parts: list[tuple[Job, Validated]] = []
        done: list[tuple[Job, list[Any] | None, str | None, float]] = []
        for job in jobs:
            try:
                parts.append(
                    (job, _subset(job.rows, job.validated, job.idx, runner, endpoint, self.policy))
                )
            except Exception as exc:
                done.append((job, None, _error(exc), 0.0))
        if len(parts) > 1:
            try:
                merged = merge_parts([(p.numbers, p.others) for _, p in parts])
                outputs = self._call(runner, merged, sum(p.n for _, p in parts))
                latency = (time.perf_counter() - started) * 1000.0
                start = 0
                for job, part in parts:
                    done.append((job, outputs[start : start + part.n], None, latency))
                    start += part.n
                return done
            except Exception:
                pass  # scored one by one below, to tell which job fails
        for job, part in parts:
            started = time.perf_counter()
            scored: list[Any] | None = None
            error: str | None = None
            try:
                scored = self._call(runner, (part.numbers, part.others), part.n)
            except Exception as exc:
                error = _error(exc)
            done.append((job, scored, error, (time.perf_counter() - started) * 1000.0))
        return done

    def _call(self, runner: ModelRunner, part: Any, n: int) -> list[Any]:
        """One model call of the shadow, counted in `relevo_model_batch_rows` under its own
        name as the serving path counts its calls (a failed call too)."""
        try:
            return runner.run(part, n)
        finally:
            if self.metrics is not None:
                with contextlib.suppress(Exception):
                    self.metrics.batch_size.labels(runner.ref).observe(n)

    def _rows(
        self, job: Job, outputs: list[Any] | None, error: str | None, latency: float
    ) -> list[ShadowRow]:
        endpoint = job.endpoint
        version = endpoint.runners[1].version
        now = datetime.now(UTC)
        name = endpoint.deployment.name
        return [
            ShadowRow(
                job.ids[i],
                name,
                version.name,
                version.version,
                now,
                None if outputs is None else orjson.dumps(outputs[k]).decode(),
                error,
                latency,
            )
            for k, i in enumerate(job.idx.tolist())
        ]

    def _count(self, endpoint: Endpoint, outcome: str, n: int) -> None:
        if self.metrics is not None and len(endpoint.runners) > 1:
            ref = endpoint.runners[1].ref
            self.metrics.shadow_rows.labels(endpoint.deployment.name, ref, outcome).inc(n)


def _error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:1000]
