"""Simulated production traffic: customers sent to a relevo server over real HTTP.

Callers are a few threads, each with its own `relevo.Client`; requests are a mix of one
customer (an app scoring the customer in front of it) and batches (a nightly CRM sync). What
the callers measure (latency as they see it, requests per second) is kept in `TrafficStats`.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from relevo.client import Client
from relevo.errors import RelevoError


@dataclass(frozen=True)
class Request:
    """The customers of one HTTP request (one row, or a batch)."""

    day: int
    customers: pd.DataFrame


def plan_requests(
    customers: pd.DataFrame,
    day: int,
    rng: np.random.Generator,
    *,
    single_share: float = 0.5,
    batch_rows: tuple[int, int] = (20, 100),
) -> list[Request]:
    """Cut one day of customers into requests: about `single_share` of them one by one, the
    rest in batches; the requests shuffled so both kinds arrive together."""
    n_single = round(len(customers) * single_share)
    requests = [Request(day, customers.iloc[i : i + 1]) for i in range(n_single)]
    start = n_single
    while start < len(customers):
        size = int(rng.integers(batch_rows[0], batch_rows[1] + 1))
        requests.append(Request(day, customers.iloc[start : start + size]))
        start += size
    order = rng.permutation(len(requests))
    return [requests[i] for i in order]


@dataclass(frozen=True)
class Snapshot:
    """The callers' view so far."""

    requests: int
    rows: int
    failed: int
    seconds: float
    per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass
class TrafficStats:
    """Requests, rows, failures and latencies as the callers saw them (thread-safe)."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    latencies_ms: list[float] = field(default_factory=list)
    answers: list[pd.DataFrame] = field(default_factory=list)
    requests: int = 0
    rows: int = 0
    failed: int = 0
    errors: list[RelevoError] = field(default_factory=list)
    _recent: deque[float] = field(default_factory=deque)
    _started: float = field(default_factory=time.perf_counter)

    def answered(self, answer: pd.DataFrame, seconds: float) -> None:
        with self._lock:
            self._count(seconds)
            self.rows += len(answer)
            self.answers.append(answer)

    def refused(self, error: RelevoError, seconds: float) -> None:
        with self._lock:
            self._count(seconds)
            self.failed += 1
            self.errors.append(error)

    def _count(self, seconds: float) -> None:
        self.requests += 1
        self.latencies_ms.append(seconds * 1000.0)
        self._recent.append(time.perf_counter())

    def snapshot(self) -> Snapshot:
        now = time.perf_counter()
        with self._lock:
            while self._recent and now - self._recent[0] > 1.0:
                self._recent.popleft()
            latencies = np.asarray(self.latencies_ms)
            elapsed = now - self._started
            recent = len(self._recent)
            requests, rows, failed = self.requests, self.rows, self.failed
        rate = recent / min(elapsed, 1.0) if elapsed > 0 else 0.0
        p50, p95, p99 = (
            np.percentile(latencies, [50, 95, 99]).tolist() if len(latencies) else [0.0] * 3
        )
        return Snapshot(requests, rows, failed, elapsed, rate, p50, p95, p99)

    def overall(self) -> Snapshot:
        """The whole run: requests per second averaged over it."""
        snap = self.snapshot()
        return replace(snap, per_second=snap.requests / snap.seconds if snap.seconds else 0.0)


def send(
    url: str,
    deployment: str,
    requests: list[Request],
    stats: TrafficStats,
    *,
    threads: int = 4,
    tick: Callable[[], None] = lambda: None,
    tick_s: float = 0.1,
) -> None:
    """Send `requests` from `threads` concurrent callers; `tick` runs every `tick_s` on the
    calling thread until all are answered (to redraw a live view)."""
    todo: queue.SimpleQueue[Request] = queue.SimpleQueue()
    for request in requests:
        todo.put(request)

    stop = threading.Event()

    def caller() -> None:
        with Client(url) as client:
            while not stop.is_set():
                try:
                    request = todo.get_nowait()
                except queue.Empty:
                    return
                began = time.perf_counter()
                try:
                    answer = _predict(client, deployment, request.customers)
                except RelevoError as exc:
                    stats.refused(exc, time.perf_counter() - began)
                    continue
                stats.answered(answer, time.perf_counter() - began)

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="relevo-demo-caller") as pool:
        futures = [pool.submit(caller) for _ in range(threads)]
        try:
            while True:
                tick()
                finished, pending = wait(futures, timeout=tick_s)
                if not pending:
                    break
        except BaseException:
            stop.set()  # Ctrl-C: callers finish the request in hand and stop
            raise
        tick()
    for future in finished:
        future.result()  # a caller's unexpected error surfaces here


def _predict(client: Client, deployment: str, customers: pd.DataFrame) -> pd.DataFrame:
    if len(customers) == 1:
        # one customer, as an app would send it: a plain JSON record
        records = customers.to_dict(orient="records")
        predictions = client.predict_records(deployment, records)
        return pd.DataFrame.from_records(predictions, index=customers.index)
    return client.predict(deployment, customers)
