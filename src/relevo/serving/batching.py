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

Riding along suits a rider model about as quick as the host's. A slower one (a heavier model,
one that waits on something) would hold every answer of the host's batches behind its call. So
each batcher keeps a moving average of its call time (`call_s`, over batches, not over single
large requests), and a rider whose calls take more than `QUICK_RATIO` x the host's +
`QUICK_SLACK_S`, or whose speed is not known yet, is scored in its model's own worker thread
(`_Lane`), beside the host's calls: it slows only the rows it answers, never the host's
answers, its next batch or the event loop. A lone rider (low load) always goes to the lane,
never onto the event loop. The lane logs their outputs (the host's `on_scored`), then the event
loop answers their callers; it merges what queued meanwhile into calls of `max_rows` at most.
A caller may give a rider a deadline (`submit(..., deadline_s=...)`): past it the caller gets
`RiderTimeout` (the predictor then has the champion answer), and while a lane's model call has
run past `RIDER_DEADLINE_S` (a model that hangs) every rider sent to it gets `RiderTimeout` at
once rather than queue behind it. A rider quick so far whose next call, made in the host's
batch, hangs (past `RIDER_DEADLINE_S`) is cut loose by the event loop (`_watch`): the host's
callers of that batch, scored already, are logged and answered, the host's next batches are
scored in another worker thread, and the hung model takes no riders (inline or in its lane)
until that call returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from relevo.errors import RelevoError
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
#: a lone request runs on the event loop only when its model's calls take at most this long
#: (`call_s`): a longer call would hold every other request of the process, its health checks
#: and /metrics for its duration. Below it the hand-off to a worker thread costs more than the
#: wait (the churn pipeline's 16 ms call on a slow machine: +2.9 ms of c=1 p50 in a thread)
INLINE_S = 0.1
#: a batch holds its fresh riders for the next one only when it serves at least this many
#: requests of its own (a sign of load: the next batch is coming) ...
HOLD_HOSTS = 4
#: ... and one model's fresh riders come to fewer rows than this
HOLD_ROWS = 4
#: a rider lane's thread ends after this long without work (the next rider starts another)
LANE_IDLE_S = 5.0
#: a rider lane whose model call has run this long takes no more rows (see `_Lane.dispatch`);
#: the predictor gives a challenger's rows this deadline too
RIDER_DEADLINE_S = 10.0
#: a rider's model scores its rows in the host's call when its calls take at most this many
#: times the host's, plus `QUICK_SLACK_S`; otherwise in its own lane
QUICK_RATIO = 1.5
QUICK_SLACK_S = 0.001
#: the weight of the newest call in a model's moving average of its call time
CALL_WEIGHT = 0.2


#: guards the making of a batcher's lane
_LANES = threading.Lock()
#: the futures (by id) of riders whose lane has their outputs and is answering them: their
#: deadline no longer fires (see `_Lane._work`)
_claimed: set[int] = set()
_CLAIMS = threading.Lock()


class RiderTimeout(RuntimeError):
    """A rider's model did not answer before the caller's deadline."""


class _Batch:
    """A batch with riders, scored in a worker thread: what the event loop's watchdog
    (`MicroBatcher._watch`) needs to answer the host's callers when a rider's call hangs."""

    __slots__ = ("finished", "lock", "own", "rescued", "riding_since", "timer")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: when the riders' calls began (the host's own rows are scored by then), None before
        self.riding_since: float | None = None
        #: the host's scored callers and what each gets
        self.own: tuple[list[Item], list[Settlement]] = ([], [])
        #: the worker thread is done with the riders / the watchdog answered the host's callers
        self.finished = False
        self.rescued = False
        self.timer: asyncio.TimerHandle | None = None


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
        #: this model's own thread for rows riding in other batchers' batches (made on need)
        self._lane: _Lane | None = None
        #: the seconds a model call takes, a moving average (None: no call yet)
        self.call_s: float | None = None
        #: when this model's call riding in a host's batch began (None: none in flight)
        self._riding_since: float | None = None
        #: sizes of the model calls made, for metrics (read and cleared by the owner)
        self.on_batch: Callable[[int], None] | None = None
        #: called where the batch was scored (a worker thread under load) with the outputs of
        #: the callers that gave a tag, before any caller is answered: the prediction log
        #: writes a batch's entries there, once, off the event loop
        self.on_scored: OnScored | None = None

    async def submit(
        self,
        columns: Columns,
        n: int,
        tag: Any = None,
        scorer: MicroBatcher | None = None,
        deadline_s: float | None = None,
    ) -> list[Any]:
        """The outputs of `n` rows, scored with the next batch; by `scorer`'s model when given
        (its rows ride in this batcher's batches, scored in this batch's call or in that
        model's lane: see the module's note). Past `deadline_s` the caller gets `RiderTimeout`
        (the rows' late outputs are dropped, neither logged nor answered)."""
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
        if deadline_s is None:
            return await fut
        expiry = loop.call_later(deadline_s, _expire, fut, deadline_s)
        try:
            return await fut
        finally:
            expiry.cancel()

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
            # a cancelled caller, or a rider past its deadline, is scored no more
            live = [it for it in items if not it[2].done()]
            held -= sum(it[2].done() for it in items[:held])
            if not live:
                continue
            # a lone request to a quick model runs inline: no thread hand-off, the lowest
            # latency at low load. Several requests (load), a large one, or one to a model
            # whose calls are slow or not known yet run in a worker thread, so the event loop
            # keeps reading requests and answering probes meanwhile.
            alone = len(live) == 1 and live[0][4] is None
            if len(live) > 1 or live[0][1] > THREAD_ROWS or (alone and not self._inline()):
                live = self._hold(live, held) if len(live) > 1 else live
                self._busy = True
                self._task = loop.create_task(self._run_in_thread(loop, live))
                return
            scorer = live[0][4]
            if scorer is not None:  # a lone rider: never scored on the event loop
                scorer._lane_for().dispatch(live, self.on_scored, loop)
                continue
            settlements, claims = self._score_all(live, loop)
            _settle_all(settlements)
            _release(claims)
            if self.max_wait_s > 0 and self._queue:
                self._schedule(loop)
                return

    def _inline(self) -> bool:
        """Whether a lone request may be scored on the event loop: this model's calls are
        known to be quick (`INLINE_S`; a model not called yet may be slow, and its first call
        warms it up too)."""
        return self.call_s is not None and self.call_s <= INLINE_S

    async def _run_in_thread(self, loop: asyncio.AbstractEventLoop, items: list[Item]) -> None:
        batch = None
        if any(it[4] is not None for it in items):  # riders: a hung one must not hold us
            batch = _Batch()
            batch.timer = loop.call_later(RIDER_DEADLINE_S, self._watch, batch, loop)
        try:
            settlements, claims = await asyncio.to_thread(self._score_all, items, loop, batch)
            _settle_all(settlements)
            _release(claims)
        finally:
            if batch is not None and batch.timer is not None:
                batch.timer.cancel()
            if batch is None or not batch.rescued:  # else the watchdog freed the batcher
                self._busy = False
                if self._queue or self._held:
                    self._schedule(loop)

    def _watch(self, batch: _Batch, loop: asyncio.AbstractEventLoop) -> None:
        """On the event loop, `RIDER_DEADLINE_S` into a batch with riders: when a rider's
        call has run that long, the host's callers (scored already) are logged and answered,
        and the batcher takes its next batch in another worker thread; the riders' callers
        have their own deadline. Otherwise it looks again later."""
        with batch.lock:
            if batch.finished:
                return
            since = batch.riding_since
            waited = 0.0 if since is None else time.monotonic() - since
            if waited < RIDER_DEADLINE_S:
                batch.timer = loop.call_later(RIDER_DEADLINE_S - waited, self._watch, batch, loop)
                return
            batch.rescued = True
            own, settlements = batch.own
        log.warning(
            "a challenger's model call has not returned for %.0f s: the champion's rows of "
            "its batch are answered, and it takes no rows until the call returns",
            waited,
        )
        if self.on_scored is not None and own:
            _hook(self.on_scored, own, settlements)
        _settle_all(settlements)
        self._busy = False
        if self._queue or self._held:
            self._schedule(loop)

    def _score_all(
        self, items: list[Item], loop: asyncio.AbstractEventLoop, batch: _Batch | None = None
    ) -> tuple[list[Settlement], list[int]]:
        """Score a batch, this model's rows first; the log hook sees them before any of their
        callers is answered. A quick rider's model scores its rows here too, after this
        model's; a slow one's rows go to its lane (see the module's note). Returns the
        settlements, and the riders claimed here (released once they are answered). With
        `batch` (a worker thread's batch with riders), the event loop may answer this model's
        callers itself if a rider's call hangs (`_watch`)."""
        one_native_thread()  # a worker thread of a busy server: see `native_threads`
        own: list[Item] = []
        riders: dict[int, tuple[MicroBatcher, list[Item]]] = {}
        for item in items:
            scorer = item[4]
            if scorer is None:
                own.append(item)
            else:
                riders.setdefault(id(scorer), (scorer, []))[1].append(item)
        inline: list[tuple[MicroBatcher, list[Item]]] = []
        for scorer, group in riders.values():
            if scorer._quick_beside(self):
                inline.append((scorer, group))
            else:
                scorer._lane_for().dispatch(group, self.on_scored, loop)
        settlements: list[Settlement] = []
        scored: list[Item] = []
        if own:
            merged, total = self._merge_items(own)
            settlements = self._score(own, merged, total)
            scored = own
        claims: list[int] = []
        if inline and batch is not None:
            with batch.lock:
                batch.own = (scored, settlements)
                batch.riding_since = time.monotonic()
        for scorer, group in inline:
            merged, total = scorer._merge_items(group)
            scorer._riding_since = time.monotonic()
            try:
                outputs = scorer._score(group, merged, total)
            finally:
                scorer._riding_since = None
            kept = _claim(list(zip(group, outputs, strict=True)))
            claims += [id(it[2]) for it, _ in kept]
            scored = scored + [it for it, _ in kept]
            settlements = settlements + [s for _, s in kept]
        if batch is not None:
            with batch.lock:
                batch.finished = True
                if batch.rescued:  # the loop logged and answered this model's callers
                    done = len(batch.own[0])
                    scored, settlements = scored[done:], settlements[done:]
        if self.on_scored is not None and scored:
            _hook(self.on_scored, scored, settlements)
        return settlements, claims

    def _quick_beside(self, host: MicroBatcher) -> bool:
        """Whether this model's calls are quick enough to ride in `host`'s (see the module's
        note): known, and at most `QUICK_RATIO` x the host's + `QUICK_SLACK_S`."""
        mine, theirs = self.call_s, host.call_s
        if mine is None or theirs is None or self._hung():
            return False
        return mine <= QUICK_RATIO * theirs + QUICK_SLACK_S

    def _hung(self) -> bool:
        """Whether a call of this model riding in a host's batch has run past
        `RIDER_DEADLINE_S` (a model that hangs)."""
        since = self._riding_since
        return since is not None and time.monotonic() - since > RIDER_DEADLINE_S

    def _lane_for(self) -> _Lane:
        lane = self._lane
        if lane is None:
            with _LANES:  # two hosts' worker threads may ask at once
                lane = self._lane
                if lane is None:
                    lane = self._lane = _Lane(self)
        return lane

    def _merge_items(self, items: list[Item]) -> tuple[Columns, int]:
        if len(items) == 1:
            return items[0][0], items[0][1]
        return self._merge([it[0] for it in items]), sum(it[1] for it in items)

    def _score(self, items: list[Item], merged: Columns, total: int) -> list[Settlement]:
        """Run this model on a batch; what each caller gets. When a batch of several callers
        fails, each caller is scored alone, so one bad request fails only itself."""
        started = time.perf_counter()
        try:
            outputs = self._run(merged, total)
            if len(outputs) != total:
                raise RuntimeError(f"the model answered {len(outputs)} rows for {total}")
        except Exception as exc:
            if len(items) == 1:
                return [(items[0][2], None, exc)]
            return [s for item in items for s in self._score([item], item[0], item[1])]
        finally:
            if total <= self.max_rows:  # a batch: one large request says little of them
                spent = time.perf_counter() - started
                last = self.call_s
                self.call_s = spent if last is None else last + CALL_WEIGHT * (spent - last)
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


class _Lane:
    """One model's worker thread for the rows that ride in other batchers' batches.

    A host batch hands its riders here (`dispatch`) and goes on scoring its own rows: the two
    model calls run side by side, and the host's callers never wait for this one. What queued
    while a call ran is scored by the next call, together. The lane logs the outputs of the
    callers still waiting (the host's `on_scored`), then has the event loop answer them
    (`_answer`). The thread ends after `LANE_IDLE_S` without work; the next rider starts
    another.
    """

    def __init__(self, batcher: MicroBatcher) -> None:
        self._batcher = batcher
        self._jobs: queue.SimpleQueue[tuple[list[Item], OnScored | None, Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        #: when the model call in flight started (time.monotonic()), None between calls
        self._since: float | None = None

    def dispatch(
        self, items: list[Item], on_scored: OnScored | None, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Score `items` in this lane; their callers are answered on `loop`. While the model
        call in flight has run past `RIDER_DEADLINE_S` (a model that hangs), nothing queues
        behind it: the callers get `RiderTimeout` at once."""
        since = self._since
        if (since is not None and time.monotonic() - since > RIDER_DEADLINE_S) or (
            self._batcher._hung()
        ):
            late = RiderTimeout(
                f"the model has not answered its last call for over {RIDER_DEADLINE_S:g} s"
            )
            refused: list[Settlement] = [(it[2], None, late) for it in items]
            loop.call_soon_threadsafe(_settle_all, refused)
            return
        with self._lock:
            self._jobs.put((items, on_scored, loop))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="relevo-rider-lane", daemon=True
                )
                self._thread.start()

    def _work(self) -> None:
        one_native_thread()
        while True:
            try:
                jobs = [self._jobs.get(timeout=LANE_IDLE_S)]
            except queue.Empty:
                with self._lock:
                    if self._jobs.empty():
                        self._thread = None
                        return
                continue
            with contextlib.suppress(queue.Empty):
                while True:
                    jobs.append(self._jobs.get_nowait())
            # one call per `max_rows` rows at most, as the model's own batcher would make
            sizes = [_rows(job) for job in jobs]
            while jobs:
                rows = take = 0
                while take < len(jobs) and (
                    take == 0 or rows + sizes[take] <= self._batcher.max_rows
                ):
                    rows += sizes[take]
                    take += 1
                now, jobs, sizes = jobs[:take], jobs[take:], sizes[take:]
                try:
                    self._run_jobs(now)
                except Exception as exc:  # never lose the thread, nor leave a caller waiting
                    log.exception("a rider lane failed")
                    failed: list[Settlement] = [(it[2], None, exc) for job in now for it in job[0]]
                    with contextlib.suppress(RuntimeError):
                        now[0][2].call_soon_threadsafe(_settle_all, failed)

    def _run_jobs(self, jobs: list[tuple[list[Item], OnScored | None, Any]]) -> None:
        """Score the queued riders with one call, log them, have the loop answer them."""
        # callers past their deadline (or gone) are not scored
        pairs = [(it, job[1]) for job in jobs for it in job[0] if not it[2].done()]
        if not pairs:
            return
        items = [it for it, _ in pairs]
        batcher = self._batcher
        self._since = time.monotonic()
        try:
            merged, total = batcher._merge_items(items)
            settlements = batcher._score(items, merged, total)
        except Exception as exc:  # merging failed: every caller gets the error
            settlements = [(it[2], None, exc) for it in items]
        finally:
            self._since = None
        hook_of = {id(it[2]): hook for it, hook in pairs}
        live = _claim(list(zip(items, settlements, strict=True)))
        claims = [id(it[2]) for it, _ in live]
        hooked: dict[int, tuple[OnScored, list[Item], list[Settlement]]] = {}
        for it, s in live:
            hook = hook_of[id(it[2])]
            if hook is not None:
                _, its, ss = hooked.setdefault(id(hook), (hook, [], []))
                its.append(it)
                ss.append(s)
        for hook, its, ss in hooked.values():
            _hook(hook, its, ss)
        try:
            jobs[0][2].call_soon_threadsafe(_answer, [s for _, s in live], claims)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            _answer([], claims)


def _rows(job: tuple[list[Item], OnScored | None, Any]) -> int:
    return sum(it[1] for it in job[0] if not it[2].done())


def _claim(scored: list[tuple[Item, Settlement]]) -> list[tuple[Item, Settlement]]:
    """The scored riders whose callers still wait, claimed under the lock their deadline's
    expiry takes: a caller is answered either by these outputs (logged first) or by its
    timeout, never both. Released by `_release` once answered."""
    with _CLAIMS:
        kept = [(it, s) for it, s in scored if not it[2].done()]
        _claimed.update(id(it[2]) for it, _ in kept)
    return kept


def _answer(settlements: list[Settlement], claims: list[int]) -> None:
    """On the event loop: answer a lane's callers (already logged) and release their claims."""
    _settle_all(settlements)
    _release(claims)


def _release(claims: list[int]) -> None:
    if claims:
        with _CLAIMS:
            _claimed.difference_update(claims)


def _hook(on_scored: OnScored, items: list[Item], settlements: list[Settlement]) -> None:
    """Tell the log hook the (tag, outputs) of the tagged callers scored without error."""
    tagged = [
        (it[3], s[1])
        for it, s in zip(items, settlements, strict=True)
        if it[3] is not None and s[1] is not None
    ]
    if tagged:
        try:
            on_scored(tagged)
        except RelevoError as exc:  # explained (a full disk): each caller is told it, too
            _warn_now_and_then(f"the batch's log entries were not queued: {exc}")
        except Exception:  # the callers see their tags untouched and do it themselves
            log.exception("the batch's on_scored hook failed")


#: a warning said again at most this often (one per batch flooded the log under load)
WARN_EVERY_S = 30.0
_warned: dict[str, float] = {}


def _warn_now_and_then(message: str) -> None:
    now = time.monotonic()
    if now - _warned.get(message, -WARN_EVERY_S) >= WARN_EVERY_S:
        if len(_warned) > 100:
            _warned.clear()
        _warned[message] = now
        log.warning("%s (said at most every %g s)", message, WARN_EVERY_S)


def _expire(fut: asyncio.Future[list[Any]], deadline_s: float) -> None:
    with _CLAIMS:
        if fut.done() or id(fut) in _claimed:  # answered, or being answered by its lane
            return
        fut.set_exception(RiderTimeout(f"the model did not answer within {deadline_s:g} s"))


def _settle_all(settlements: list[Settlement]) -> None:
    for fut, part, exc in settlements:
        if fut.done():
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(part if part is not None else [])
