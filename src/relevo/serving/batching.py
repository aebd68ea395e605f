"""Micro-batching: concurrent requests for one model become one model call.

A scikit-learn model costs nearly the same for 1 row as for 64, so rows that arrive while the
event loop is busy are scored together. With `max_wait_s == 0` nothing waits on purpose: a batch
is whatever queued up since the last call (zero added latency at low load, large batches under
high load). Each caller gets exactly its own rows back, in order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

Columns = dict[str, list[Any]]
#: scores merged columns of n rows, returns one output object per row
Runner = Callable[[Columns, int], list[Any]]

#: a single request above this many rows runs in a worker thread, off the event loop
THREAD_ROWS = 2048


class MicroBatcher:
    def __init__(self, run: Runner, max_rows: int = 64, max_wait_s: float = 0.0) -> None:
        self._run = run
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self._queue: deque[tuple[Columns, int, asyncio.Future[list[Any]]]] = deque()
        self._scheduled = False
        self._busy = False
        #: sizes of the model calls made, for metrics (read and cleared by the owner)
        self.on_batch: Callable[[int], None] | None = None

    async def submit(self, columns: Columns, n: int) -> list[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Any]] = loop.create_future()
        self._queue.append((columns, n, fut))
        self._schedule(loop)
        return await fut

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._scheduled or self._busy:
            return
        self._scheduled = True
        if self.max_wait_s > 0:
            loop.call_later(self.max_wait_s, self._flush, loop)
        else:
            loop.call_soon(self._flush, loop)

    def _take(self) -> list[tuple[Columns, int, asyncio.Future[list[Any]]]]:
        items = [self._queue.popleft()]
        rows = items[0][1]
        while self._queue and rows + self._queue[0][1] <= self.max_rows:
            item = self._queue.popleft()
            items.append(item)
            rows += item[1]
        return items

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        while self._queue:
            items = [it for it in self._take() if not it[2].cancelled()]
            if not items:
                continue
            merged, total = _merge(items)
            # a lone request runs inline: no thread hand-off, the lowest latency at low load.
            # Several requests (load) or a large one run in a worker thread, so the event loop
            # keeps reading requests meanwhile and the next batch is fuller.
            if total > THREAD_ROWS or len(items) > 1:
                self._busy = True
                loop.create_task(self._run_in_thread(loop, items, merged, total))
                return
            self._deliver(items, merged, total)
            if self.max_wait_s > 0 and self._queue:
                self._schedule(loop)
                return

    async def _run_in_thread(
        self,
        loop: asyncio.AbstractEventLoop,
        items: list[tuple[Columns, int, asyncio.Future[list[Any]]]],
        merged: Columns,
        total: int,
    ) -> None:
        try:
            outputs = await asyncio.to_thread(self._run, merged, total)
        except Exception as exc:
            _fail(items, exc)
        else:
            _split(items, outputs)
        finally:
            if self.on_batch is not None:
                self.on_batch(total)
            self._busy = False
            if self._queue:
                self._schedule(loop)

    def _deliver(
        self,
        items: list[tuple[Columns, int, asyncio.Future[list[Any]]]],
        merged: Columns,
        total: int,
    ) -> None:
        try:
            outputs = self._run(merged, total)
        except Exception as exc:
            _fail(items, exc)
        else:
            _split(items, outputs)
        if self.on_batch is not None:
            self.on_batch(total)


def _merge(items: list[tuple[Columns, int, Any]]) -> tuple[Columns, int]:
    if len(items) == 1:
        return items[0][0], items[0][1]
    names = items[0][0].keys()
    merged: Columns = {name: [] for name in names}
    for columns, _n, _f in items:
        for name in names:
            merged[name].extend(columns[name])
    return merged, sum(it[1] for it in items)


def _split(items: list[tuple[Columns, int, asyncio.Future[list[Any]]]], outputs: list[Any]) -> None:
    start = 0
    for _columns, n, fut in items:
        if not fut.done():
            fut.set_result(outputs[start : start + n])
        start += n


def _fail(items: list[tuple[Columns, int, asyncio.Future[list[Any]]]], exc: Exception) -> None:
    for _columns, _n, fut in items:
        if not fut.done():
            fut.set_exception(exc)
