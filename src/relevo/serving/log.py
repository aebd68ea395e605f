"""The prediction log: every answered row is stored, off the request's hot path.

Requests append one cheap entry per answered request to a bounded in-memory queue; a background
thread expands entries into rows and writes them in batches. When the queue is full, callers
wait for room (back-pressure) instead of the queue growing or rows being dropped; `close()`
writes everything accepted before returning. A failed write is retried, never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from relevo.errors import UnavailableError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """The rows one request got answered, as they were sent and answered."""

    deployment: str
    model_name: str
    model_version: int
    created_at: float  # Unix time
    ids: Sequence[str]
    rows: Sequence[dict[str, Any]]
    outputs: Sequence[dict[str, Any]]
    latency_ms: float
    keys: Sequence[Any] | None = None

    @property
    def n(self) -> int:
        return len(self.ids)


def entry_rows(entry: LogEntry) -> list[dict[str, Any]]:
    """The store rows of one entry."""
    created = datetime.fromtimestamp(entry.created_at, UTC)
    keys = entry.keys if entry.keys is not None else [None] * entry.n

    def dumps(value: Any) -> bytes:
        # default=str: a value JSON has no type for (a timestamp column) is kept as its text
        return orjson.dumps(value, default=str)

    return [
        {
            "id": pid,
            "deployment": entry.deployment,
            "model_name": entry.model_name,
            "model_version": entry.model_version,
            "created_at": created,
            "routing_key": None if key is None else str(key),
            "features": dumps(row).decode(),
            "output": dumps(out).decode(),
            "latency_ms": entry.latency_ms,
        }
        for pid, row, out, key in zip(entry.ids, entry.rows, entry.outputs, keys, strict=True)
    ]


Writer = Callable[[list[dict[str, Any]]], int]


class PredictionLog:
    """A bounded queue of log entries drained by one writer thread."""

    def __init__(
        self,
        write: Writer,
        *,
        capacity_rows: int = 100_000,
        flush_rows: int = 5_000,
        flush_interval_s: float = 0.2,
        wait_timeout_s: float = 30.0,
        on_written: Callable[[int], None] | None = None,
        on_error: Callable[[], None] | None = None,
        dead_letter: Path | None = None,
    ) -> None:
        self._write = write
        self.capacity_rows = capacity_rows
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s
        self.wait_timeout_s = wait_timeout_s
        self._on_written = on_written
        self._on_error = on_error
        #: rows the store refuses for good (and, at a stop, rows it could not take in time)
        #: are appended here as JSON lines instead of being lost
        self.dead_letter = dead_letter
        self.dead_lettered = 0
        self._abandon = False
        self._queue: deque[LogEntry] = deque()
        self._pending = 0  # rows queued or being written
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._room = threading.Condition(self._lock)
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="relevo-prediction-log", daemon=True)
        self.rows_written = 0
        self.errors = 0
        self._thread.start()

    @property
    def depth(self) -> int:
        """Rows accepted but not yet stored."""
        return self._pending

    def offer(self, entry: LogEntry) -> bool:
        """Queue an entry if there is room now (the hot path's cheap, synchronous call)."""
        with self._lock:
            if self._closing:
                raise UnavailableError("the prediction log is closed")
            # one entry larger than the whole queue is still accepted into an empty queue
            if self._pending and self._pending + entry.n > self.capacity_rows:
                return False
            self._queue.append(entry)
            self._pending += entry.n
            if self._pending >= self.flush_rows:
                self._wake.set()
            return True

    async def put(self, entry: LogEntry) -> None:
        """Queue an entry, waiting for room when the queue is full."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_timeout_s
        while not self.offer(entry):
            fut: asyncio.Future[None] = loop.create_future()
            with self._lock:
                self._waiters.append((loop, fut))
            self._wake.set()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise UnavailableError(
                    "the prediction log is full and the store is not keeping up; try again"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fut, timeout=min(remaining, 0.5))

    def put_blocking(self, entry: LogEntry) -> None:
        """Queue an entry from synchronous code, blocking while the queue is full."""
        deadline = time.monotonic() + self.wait_timeout_s
        while not self.offer(entry):
            self._wake.set()
            with self._room:
                self._room.wait(timeout=0.5)
            if time.monotonic() > deadline:
                raise UnavailableError("the prediction log is full and the store is not keeping up")

    def flush(self, timeout_s: float = 60.0) -> None:
        """Block until everything queued so far is stored."""
        deadline = time.monotonic() + timeout_s
        self._wake.set()
        with self._room:
            while self._pending and time.monotonic() < deadline:
                self._wake.set()
                self._room.wait(timeout=0.1)

    def close(self, timeout_s: float = 60.0) -> None:
        """Store everything accepted, then stop the writer thread."""
        with self._lock:
            self._closing = True
        self._wake.set()
        self._thread.join(timeout=timeout_s)
        if self._thread.is_alive():  # the store is down: stop retrying, keep the rows on disk
            self._abandon = True
            self._wake.set()
            self._thread.join(timeout=10)
        with self._lock:
            left = [r for e in self._queue for r in entry_rows(e)]
            self._queue.clear()
            self._pending = 0
        if left:
            self._dead_letter(left, "the store did not take them before the stop")

    def _store(self, records: list[dict[str, Any]]) -> None:
        """Write `records`; rows the store refuses for good go to the dead letter, so one bad
        row can neither block the log nor take its neighbours with it. Transient errors are
        raised for the caller to retry."""
        try:
            self._write(records)
        except Exception as exc:
            if _transient(exc):
                raise
            self._count_error()
            if len(records) == 1:
                self._dead_letter(records, f"{type(exc).__name__}: {exc}")
                return
            half = len(records) // 2
            self._store(records[:half])
            self._store(records[half:])

    def _count_error(self) -> None:
        self.errors += 1
        if self._on_error is not None:
            with contextlib.suppress(Exception):
                self._on_error()

    def _dead_letter(self, records: list[dict[str, Any]], reason: str) -> None:
        self.dead_lettered += len(records)
        if self.dead_letter is None:
            log.error(
                "%d prediction rows could not be stored (%s) and are lost: no dead-letter "
                "file is set",
                len(records),
                reason,
            )
            return
        try:
            self.dead_letter.parent.mkdir(parents=True, exist_ok=True)
            with self.dead_letter.open("ab") as fh:
                for record in records:
                    fh.write(orjson.dumps({**record, "error": reason}, default=str) + b"\n")
        except OSError:
            log.exception(
                "cannot write %d rows to the dead letter %s", len(records), self.dead_letter
            )
            return
        log.error(
            "%d prediction rows could not be stored (%s); kept in %s",
            len(records),
            reason,
            self.dead_letter,
        )

    def _run(self) -> None:
        backoff = 0.1
        while True:
            self._wake.wait(timeout=self.flush_interval_s)
            self._wake.clear()
            while True:
                with self._lock:
                    batch: list[LogEntry] = []
                    rows = 0
                    for entry in self._queue:
                        if batch and rows + entry.n > self.flush_rows:
                            break
                        batch.append(entry)
                        rows += entry.n
                    closing = self._closing
                if not batch:
                    break
                refused = self.dead_lettered
                try:
                    self._store([r for e in batch for r in entry_rows(e)])
                except Exception:
                    # the store is unreachable or busy: keep the rows, try again later
                    self._count_error()
                    log.exception("writing %d prediction rows failed; retrying", rows)
                    if self._abandon:
                        return
                    self._wake.wait(timeout=backoff)
                    self._wake.clear()
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.1
                with self._lock:
                    for _ in batch:
                        self._queue.popleft()
                    self._pending -= rows
                    stored = rows - (self.dead_lettered - refused)
                    self.rows_written += stored
                    waiters, self._waiters = self._waiters, []
                    self._room.notify_all()
                if self._on_written is not None:
                    try:
                        self._on_written(stored)
                    except Exception:
                        log.exception("prediction log callback failed")
                for loop, fut in waiters:
                    # a waiter's loop may be gone (its caller timed out): never let that stop
                    # the writer
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(_resolve, fut)
                if rows < self.flush_rows and not closing:
                    break
            with self._lock:
                if self._closing and not self._queue:
                    self._room.notify_all()
                    return


_TRANSIENT = frozenset(
    {
        "OperationalError",
        "InterfaceError",
        "DisconnectionError",
        "TimeoutError",
        "ConnectionError",
        "UnavailableError",
    }
)


def _transient(exc: BaseException) -> bool:
    """True for errors that may pass (a lost connection, a locked database), not for rows the
    store refuses (a value too long, a constraint)."""
    return any(cls.__name__ in _TRANSIENT for cls in type(exc).__mro__)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
