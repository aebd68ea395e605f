"""Micro-batching: concurrent requests for one model become one model call.

A scikit-learn model costs nearly the same for 1 row as for 64, so rows that arrive while the
event loop is busy are scored together. With `max_wait_s == 0` nothing waits on purpose: a batch
is whatever queued up since the last call (zero added latency at low load, large batches under
high load). Each caller gets exactly its own rows back, in order.

Rows another model scores may ride along (`submit(..., scorer=other)`): a canary's challenger
rows queue in the champion's batcher and are scored in the same worker-thread call, by the
challenger's model and counted in its batch sizes, after the champion's rows. A canary's
challenger answers a few rows of each micro-batch; in a batcher of its own each of them cost a
flush, a thread hand-off and a log write of their own, which doubled the per-batch work.

Under load a rider's model call is still a whole call for one or two rows (a scikit-learn
pipeline costs the same for 1 row as for 30), so a busy batch holds its few fresh riders back
for the next batch, once: the next batch is due as soon as this one is scored, and the call
then serves twice the rows. A held rider waits at most one batch more; riders are never held
at low load (a batch of fewer than `HOLD_HOSTS` requests of the batcher's own), nor when they
are many (`HOLD_ROWS`), nor twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from relevo.serving.native_threads import one_native_thread

log = logging.getLogger(__name__)

#: what a caller submits: its rows in whatever form the runner takes (default: column lists)
Columns = Any
#: a submission: its rows, their count, the caller's future, its tag (see `on_scored`) and the
#: batcher whose model scores it (None: this one's)
Item = tuple[Columns, int, "asyncio.Future[list[Any]]", Any, "MicroBatcher | None"]
#: what one caller gets: its rows, or the error
Settlement = tuple["asyncio.Future[list[Any]]", list[Any] | None, Exception | None]
#: scores merged columns of n rows, returns one output object per row
Runner = Callable[[Columns, int], list[Any]]
#: merges the submissions of one batch into one (in order)
Merger = Callable[[list[Columns]], Columns]
#: told the (tag, outputs) of a batch's tagged callers, before any of them is answered
OnScored = Callable[[list[tuple[Any, list[Any]]]], None]

#: a single request above this many rows runs in a worker thread, off the event loop
THREAD_ROWS = 2048
#: a batch holds its fresh riders for the next one only when it serves at least this many
#: requests of its own (a sign of load: the next batch is coming) ...
HOLD_HOSTS = 4
#: ... and one model's fresh riders come to fewer rows than this
HOLD_ROWS = 4


class MicroBatcher:
    def __init__(
        self,
        run: Runner,
        max_rows: int = 64,
        max_wait_s: float = 0.0,
        merge: Merger | None = None,
    ) -> None:
        self._run = run
        self._merge = merge or merge_columns
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self._queue: deque[Item] = deque()
        #: riders held back by the last batch, first in the next one (see `_hold`)
        self._held: list[Item] = []
        self._scheduled = False
        self._busy = False
        #: the pending max-wait timer, and the rows waiting in the queue
        self._timer: asyncio.TimerHandle | None = None
        self._queued_rows = 0
        self._task: asyncio.Task[None] | None = None
        #: sizes of the model calls made, for metrics (read and cleared by the owner)
        self.on_batch: Callable[[int], None] | None = None
        #: called where the batch was scored (a worker thread under load) with the outputs of
        #: the callers that gave a tag, before any caller is answered: the prediction log
        #: writes a batch's entries there, once, off the event loop
        self.on_scored: OnScored | None = None

    async def submit(
        self, columns: Columns, n: int, tag: Any = None, scorer: MicroBatcher | None = None
    ) -> list[Any]:
        """The outputs of `n` rows, scored with the next batch; by `scorer`'s model when given
        (its rows ride in this batcher's calls)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Any]] = loop.create_future()
        self._queue.append((columns, n, fut, tag, None if scorer is self else scorer))
        self._queued_rows += n
        if self._timer is not None and self._queued_rows >= self.max_rows:
            # a full batch does not wait for the timer
            self._timer.cancel()
            self._timer = None
            loop.call_soon(self._flush, loop)
        else:
            self._schedule(loop)
        return await fut

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._scheduled or self._busy:
            return
        self._scheduled = True
        if self.max_wait_s > 0:
            self._timer = loop.call_later(self.max_wait_s, self._flush, loop)
        else:
            loop.call_soon(self._flush, loop)

    def _take(self) -> list[Item]:
        """The next batch: the riders held back by the last one, then the queue's oldest
        submissions up to `max_rows` (at least one)."""
        items, self._held = self._held, []
        rows = sum(it[1] for it in items)
        if self._queue and not items:
            items.append(self._queue.popleft())
            rows = items[0][1]
            self._queued_rows -= rows
        while self._queue and rows + self._queue[0][1] <= self.max_rows:
            item = self._queue.popleft()
            items.append(item)
            rows += item[1]
            self._queued_rows -= item[1]
        return items

    def _hold(self, items: list[Item], held: int) -> list[Item]:
        """The batch to score now: `items` less the fresh riders it holds for the next batch
        (`items[:held]` were held already and go now). Only a busy batch holds, and only a
        model's few riders: see the module's note."""
        fresh = items[held:]
        if sum(it[4] is None for it in fresh) < HOLD_HOSTS:
            return items
        rows: dict[int, int] = {}
        for it in fresh:
            if it[4] is not None:
                rows[id(it[4])] = rows.get(id(it[4]), 0) + it[1]
        if not rows:
            return items
        for it in items[:held]:  # a model with riders going now takes its fresh ones along
            rows.pop(id(it[4]), None)
        hold = {scorer for scorer, n in rows.items() if n < HOLD_ROWS}
        if not hold:
            return items
        self._held = [it for it in fresh if it[4] is not None and id(it[4]) in hold]
        return items[:held] + [it for it in fresh if it[4] is None or id(it[4]) not in hold]

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._queue or self._held:
            held = len(self._held)
            items = self._take()
            live = [it for it in items if not it[2].cancelled()]
            held -= sum(it[2].cancelled() for it in items[:held])
            if not live:
                continue
            # a lone request runs inline: no thread hand-off, the lowest latency at low load.
            # Several requests (load) or a large one run in a worker thread, so the event loop
            # keeps reading requests meanwhile and the next batch is fuller.
            if len(live) > 1 or live[0][1] > THREAD_ROWS:
                live = self._hold(live, held) if len(live) > 1 else live
                self._busy = True
                self._task = loop.create_task(self._run_in_thread(loop, live))
                return
            _settle_all(self._score_all(live))
            if self.max_wait_s > 0 and self._queue:
                self._schedule(loop)
                return

    async def _run_in_thread(self, loop: asyncio.AbstractEventLoop, items: list[Item]) -> None:
        try:
            settlements = await asyncio.to_thread(self._score_all, items)
            _settle_all(settlements)
        finally:
            self._busy = False
            if self._queue or self._held:
                self._schedule(loop)

    def _score_all(self, items: list[Item]) -> list[Settlement]:
        """Score a batch, this model's rows first and then each rider's with its own model;
        the log hook sees all of them at once."""
        one_native_thread()  # a worker thread of a busy server: see `native_threads`
        groups: dict[int, tuple[MicroBatcher, list[Item]]] = {id(self): (self, [])}
        for item in items:
            scorer = item[4] or self
            groups.setdefault(id(scorer), (scorer, []))[1].append(item)
        if not groups[id(self)][1]:  # riders alone (held ones, or a lone rider)
            del groups[id(self)]
        settlements: list[Settlement] = []
        for scorer, group in groups.values():
            merged, total = scorer._merge_items(group)
            settlements += scorer._score(group, merged, total)
        if self.on_scored is not None:
            tagged = [
                (it[3], s[1])
                for it, s in zip(_in_order(groups), settlements, strict=True)
                if it[3] is not None and s[1] is not None
            ]
            if tagged:
                try:
                    self.on_scored(tagged)
                except Exception:  # the callers see their tags untouched and do it themselves
                    log.exception("the batch's on_scored hook failed")
        return settlements

    def _merge_items(self, items: list[Item]) -> tuple[Columns, int]:
        if len(items) == 1:
            return items[0][0], items[0][1]
        return self._merge([it[0] for it in items]), sum(it[1] for it in items)

    def _score(self, items: list[Item], merged: Columns, total: int) -> list[Settlement]:
        """Run this model on a batch; what each caller gets. When a batch of several callers
        fails, each caller is scored alone, so one bad request fails only itself."""
        try:
            outputs = self._run(merged, total)
            if len(outputs) != total:
                raise RuntimeError(f"the model answered {len(outputs)} rows for {total}")
        except Exception as exc:
            if len(items) == 1:
                return [(items[0][2], None, exc)]
            return [s for item in items for s in self._score([item], item[0], item[1])]
        finally:
            if self.on_batch is not None:
                with contextlib.suppress(Exception):
                    self.on_batch(total)
        settlements: list[Settlement] = []
        start = 0
        for _columns, n, fut, _tag, _scorer in items:
            settlements.append((fut, outputs[start : start + n], None))
            start += n
        return settlements


def merge_columns(parts: list[dict[str, list[Any]]]) -> dict[str, list[Any]]:
    """Column lists of several submissions, concatenated in order."""
    names = parts[0].keys()
    merged: dict[str, list[Any]] = {name: [] for name in names}
    for columns in parts:
        for name in names:
            merged[name].extend(columns[name])
    return merged


def _in_order(groups: dict[int, tuple[MicroBatcher, list[Item]]]) -> list[Item]:
    """The items of every group, in the order their settlements were made."""
    return [item for _, group in groups.values() for item in group]


def _settle_all(settlements: list[Settlement]) -> None:
    for fut, part, exc in settlements:
        if fut.done():
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(part if part is not None else [])
