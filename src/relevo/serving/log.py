"""The prediction log: every answered row is stored, off the request's hot path.

A request hands one entry (its rows, column by column) to `offer`/`put`, which serialise it
once, append it to this process's spool file (crash safety, `relevo.serving.spool`) and queue
the bytes in a bounded in-memory queue. A background thread turns entries into rows and writes
them in batches, one multi-row INSERT (COPY on PostgreSQL) per batch. When the queue is full,
callers wait for room (back-pressure) instead of the queue growing or rows being dropped;
`close()` writes everything accepted before returning. A failed write is retried, never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from relevo.errors import UnavailableError
from relevo.private import FILE_MODE, private_dir
from relevo.serving.entries import (
    FIELDS,
    DecodedEntry,
    LogEntry,
    Row,
    decode,
    encode,
    entry_rows,
    entry_size,
    rows_of,
    unstored,
)
from relevo.serving.log_writer import RemoteWriter, WriterConfig, WriterError
from relevo.serving.profiling import ProfileBuilder
from relevo.serving.spool import (
    Orphan,
    OrphanKey,
    Spool,
    adopt_legacy,
    legacy_store_folder,
    orphans,
    store_folder,
)
from relevo.store.predictions import inline

if TYPE_CHECKING:
    from relevo.context import Relevo
    from relevo.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["LogEntry", "PredictionLog", "Writer", "open_prediction_log"]

Writer = Callable[[list[Row]], int]

#: a replica whose spool write failed this recently (and none succeeded since) is not ready
SPOOL_UNREADY_S = 10.0

#: a queued entry: its serialised form, its rows, and the number of the spool segment that
#: holds it (atoms only: the collector untracks such tuples and never walks the queue)
_Item = tuple[bytes, int, int]


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
        spool: Spool | None = None,
        profiles: ProfileBuilder | None = None,
        remote: RemoteWriter | None = None,
        stored_ids: Callable[[list[str]], set[str]] | None = None,
    ) -> None:
        self._write = write
        #: which of some ids the store holds (a replay profiles only the others)
        self._stored_ids = stored_ids
        # (through self._write, which a test may swap for a spy)
        self.rows = RowStore(lambda records: self._write(records), dead_letter)
        #: when set, batches are stored and profiled by this writer process, not here
        self.remote = remote
        self._remote_dead = 0
        self._side_held: bytes | None = None
        self.capacity_rows = capacity_rows
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s
        self.wait_timeout_s = wait_timeout_s
        self._on_written = on_written
        self._on_error = on_error
        self.spool = spool
        #: production profiles, built from each stored batch in the writer thread
        self.profiles = profiles
        self.rows_recovered = 0  # rows of dead processes' spools stored by this one
        self._recover_at: float | None = None  # when to try orphan segments again
        #: per orphan segment being replayed (its unique name, device and inode): how many of
        #: its records are stored so far
        self._replayed: dict[OrphanKey, int] = {}
        #: orphan segments holding an entry this version cannot read (a later version's)
        self._unreadable: set[OrphanKey] = set()
        self._abandon = False
        self._queue: deque[_Item] = deque()
        self._pending = 0  # rows queued or being written
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._room = threading.Condition(self._lock)
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="relevo-prediction-log", daemon=True)
        self.rows_written = 0
        self.rows_left = 0
        self.errors = 0
        #: when a spool write last failed (time.monotonic()), None once one succeeds again
        self.spool_failed_at: float | None = None
        self._thread.start()

    @property
    def depth(self) -> int:
        """Rows accepted but not yet stored."""
        return self._pending

    def offer(self, entry: LogEntry) -> bool:
        """Queue an entry if there is room now (the hot path's cheap, synchronous call).

        An entry larger than the whole queue is never accepted here: `put` splits it."""
        if entry.n > self.capacity_rows:
            return False
        return self._offer(encode(entry), entry.n)

    def offer_many(self, entries: list[LogEntry]) -> bool:
        """Queue several entries (a micro-batch's) with one spool write if there is room for
        all of them now; False (none queued) otherwise, or when the log is closed. Called
        from the thread that scored the batch, before its callers are answered."""
        rows = sum(e.n for e in entries)
        if rows > self.capacity_rows:
            return False
        payloads = [encode(e) for e in entries]  # outside the lock
        with self._lock:
            if self._closing or self._pending + rows > self.capacity_rows:
                return False
            seg = self._spool_many(payloads) if self.spool is not None else 0
            for payload, entry in zip(payloads, entries, strict=True):
                self._queue.append((payload, entry.n, seg))
            self._pending += rows
            if self._pending >= self.flush_rows:
                self._wake.set()
            return True

    def _offer(self, payload: bytes, n: int) -> bool:
        with self._lock:
            if self._closing:
                raise UnavailableError("the prediction log is closed")
            if self._pending + n > self.capacity_rows:
                return False
            # on disk before it counts as accepted: the answer goes out after this returns
            seg = self._spool_many([payload]) if self.spool is not None else 0
            self._queue.append((payload, n, seg))
            self._pending += n
            if self._pending >= self.flush_rows:
                self._wake.set()
            return True

    def _spool_many(self, payloads: list[bytes]) -> int:
        """The spool's append (under the lock); a write the disk refuses (full, read-only) is
        counted as a failed write of the log and remembered for readiness (`spool_failing`)."""
        assert self.spool is not None
        try:
            seg = self.spool.append_many(payloads)
        except UnavailableError:
            self.spool_failed_at = time.monotonic()
            self._count_error()
            raise
        if self.spool_failed_at is not None:
            self.spool_failed_at = None
        return seg

    @property
    def spool_failing(self) -> bool:
        """Whether a spool write failed in the last `SPOOL_UNREADY_S` with none succeeding
        since: the replica answers predictions 503 (nothing unlogged is answered), so it is
        not ready; after that it is tried again (readiness would otherwise stop the traffic
        that shows the disk has room again)."""
        failed = self.spool_failed_at
        return failed is not None and time.monotonic() - failed < SPOOL_UNREADY_S

    def _pieces(self, entry: LogEntry) -> list[tuple[bytes, int]]:
        step = self.capacity_rows
        if entry.n <= step:
            return [(encode(entry), entry.n)]
        parts = [entry.piece(i, min(i + step, entry.n)) for i in range(0, entry.n, step)]
        return [(encode(p), p.n) for p in parts]

    async def put(self, entry: LogEntry) -> None:
        """Queue an entry, waiting for room when the queue is full."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_timeout_s
        for payload, n in self._pieces(entry):
            while not self._offer(payload, n):
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
        self._put_blocking(self._pieces(entry))

    def put_encoded_blocking(self, payload: bytes, n: int) -> None:
        """Queue an entry of `n` rows already serialised by `entries.encode` (batch scoring
        encodes while it scores), blocking while the queue is full."""
        self._put_blocking([(payload, n)])

    def _put_blocking(self, pieces: list[tuple[bytes, int]]) -> None:
        deadline = time.monotonic() + self.wait_timeout_s
        for payload, n in pieces:
            while not self._offer(payload, n):
                self._wake.set()
                with self._room:
                    self._room.wait(timeout=0.5)
                if time.monotonic() > deadline:
                    raise UnavailableError(
                        "the prediction log is full and the store is not keeping up"
                    )

    def flush(self, timeout_s: float = 60.0) -> None:
        """Block until everything queued so far is stored."""
        deadline = time.monotonic() + timeout_s
        self._wake.set()
        with self._room:
            while self._pending and time.monotonic() < deadline:
                self._wake.set()
                self._room.wait(timeout=0.1)

    def close(self, timeout_s: float = 60.0) -> None:
        """Store everything accepted, then stop the writer thread. What the store cannot
        take in time stays in the spool for the next start (or, without one, goes to the
        dead letter)."""
        with self._lock:
            self._closing = True
        self._wake.set()
        self._thread.join(timeout=timeout_s)
        abandoned = self._thread.is_alive()
        if abandoned:  # the store is down: stop retrying, keep the rows on disk
            self._abandon = True
            self._wake.set()
            if self.remote is not None:
                # a write stuck in the writer process (its store hangs) ends now and fails
                self.remote.kill()
            self._thread.join(timeout=10)
        if self.remote is not None:
            self.remote.close(timeout_s=5.0 if abandoned else timeout_s)
        with self._lock:
            left = list(self._queue)
            self._queue.clear()
            self._pending = 0
            #: rows the store did not take before the stop (kept in the spool, else dead-lettered)
            self.rows_left = sum(n for _, n, _ in left)
            if self.spool is not None:
                self.spool.close()
        if left and self.spool is None:
            rows = [r for payload, _, _ in left for r in entry_rows(payload)]
            self._dead_letter(rows, "the store did not take them before the stop")

    def recover(self) -> int:
        """Store the rows of spool segments left by processes that are gone (a crash);
        returns the rows stored. If the store fails meanwhile, or the spool folder cannot be
        read, the writer tries again later."""
        if self.spool is None:
            return 0
        with self._lock:  # request threads add segments under this lock
            own = self.spool.paths
        total = 0
        try:
            for orphan in orphans(self.spool.folder, own):
                key = orphan.key()
                if key in self._unreadable:
                    orphan.release()  # kept for a version that reads it (said once)
                    continue
                stored, finished = self._recover_one(orphan, key)
                total += stored
                if not finished:
                    break
            else:
                self._recover_at = None
        except Exception as exc:  # listing or opening the segments failed
            self._retry_recovery(f"reading the spool {self.spool.folder} failed ({exc})")
        self.rows_recovered += total
        if total and self._on_written is not None:
            with contextlib.suppress(Exception):
                self._on_written(total)
        return total

    @property
    def recovery_pending(self) -> bool:
        """True when a replay failed on the store (it may pass) and waits for another try."""
        return self._recover_at is not None

    def _recover_one(self, orphan: Orphan, key: OrphanKey) -> tuple[int, bool]:
        """Replay one orphan segment: (rows stored now, whether all of it is stored). The
        records a failed attempt stored already are skipped when it is tried again: stored
        twice they would be harmless (inserts are idempotent), profiled twice they would not."""
        done = self._replayed.get(key, 0)
        total = 0
        try:
            payloads: list[bytes] = []
            rows = 0
            for k, payload in enumerate(orphan.records(), 1):
                if k <= done:
                    continue
                payloads.append(payload)
                rows += entry_size(payload)
                if rows >= self.flush_rows:
                    self._replay(payloads)
                    total += rows
                    self._replayed[key] = done = k
                    payloads, rows = [], 0
            self._replay(payloads)
            total += rows
        except ValueError as exc:  # a record this version cannot read: not the store's fault
            orphan.release()
            self._unreadable.add(key)
            self._count_error()
            log.warning(
                "the spool segment %s holds an entry this version of relevo cannot read (%s): "
                "it is kept as it is for a version that can, and the other segments are "
                "replayed",
                orphan.path,
                exc,
            )
            return total, True
        except Exception as exc:
            orphan.release()
            self._retry_recovery(f"replaying the spool {orphan.path} failed ({exc})")
            return total, False
        orphan.done()
        self._replayed.pop(key, None)
        log.info("stored the rows a stopped process left in %s", orphan.path)
        return total, True

    def _retry_recovery(self, why: str) -> None:
        self._count_error()
        log.warning("%s; trying again later", why)
        self._recover_at = time.monotonic() + 5.0

    def _replay(self, payloads: list[bytes]) -> None:
        # a dead process's entries, made into rows only where they are stored
        if not payloads:
            return
        stored = self._write_batch(payloads, replay=True)
        if self.profiles is not None and stored:
            self.profiles.replayed(stored)  # a dead process's rows: only their entries tell them

    def _store(self, records: list[Row]) -> None:
        refused = self.rows.dead_lettered
        try:
            self.rows.store(records)
        finally:
            if self.rows.dead_lettered != refused:
                self._count_error()

    def _count_error(self) -> None:
        self.errors += 1
        if self._on_error is not None:
            with contextlib.suppress(Exception):
                self._on_error()

    @property
    def dead_letter(self) -> Path | None:
        """Where rows the store refuses for good are kept."""
        return self.rows.dead_letter

    @property
    def dead_lettered(self) -> int:
        """Rows the store refused for good (kept in the dead letter)."""
        return self.rows.dead_lettered + self._remote_dead

    def _dead_letter(self, records: list[Row], reason: str) -> None:
        self.rows.dead_letter_rows(records, reason)

    def _ship_side(self) -> None:
        # the writer process persists this server's profiles, quality counts included
        assert self.profiles is not None and self.remote is not None
        data = self._side_held or self.profiles.side()
        if data is None:
            return
        try:
            self.remote.side(data)
            self._side_held = None
        except WriterError as exc:
            self._side_held = data  # sent again next time
            log.warning("handing quality counts to the log's writer process failed: %s", exc)

    def _write_batch(self, payloads: list[bytes], replay: bool = False) -> list[DecodedEntry]:
        """Store the entries `payloads`; returns them decoded when they were stored here, for
        the profiles (the writer process profiles what it stores itself: of a `replay`, what
        was not stored before)."""
        if self.remote is None:
            entries = [decode(p) for p in payloads]
            fresh = entries
            if replay and self.profiles is not None and self._stored_ids is not None:
                # those the dead process stored, it profiled too (`entries.unstored`)
                fresh = [entries[k] for k in unstored(entries, self._stored_ids)]
            self._store(rows_of(entries))
            return fresh
        try:
            _, dead = self.remote.write(payloads, replay=replay)
        except WriterError as exc:
            if exc.transient:
                raise
            # refused and not worth retrying as a whole: row by row here, the bad ones to
            # the dead letter (as the local writer does)
            self._store([r for payload in payloads for r in entry_rows(payload)])
            return []
        if dead:
            self._remote_dead += dead
            self._count_error()
        return []

    def _run(self) -> None:
        backoff = 0.1
        while True:
            self._wake.wait(timeout=self.flush_interval_s)
            self._wake.clear()
            while True:
                with self._lock:
                    batch: list[_Item] = []
                    rows = 0
                    for item in self._queue:
                        if batch and rows + item[1] > self.flush_rows:
                            break
                        batch.append(item)
                        rows += item[1]
                    closing = self._closing
                if not batch:
                    break
                refused = self.dead_lettered
                try:
                    stored = self._write_batch([payload for payload, _, _ in batch])
                except Exception as exc:
                    # the store is unreachable or busy: keep the rows, try again later (said
                    # at each try, the traceback only at debug level: an outage repeats it)
                    self._count_error()
                    log.warning(
                        "writing %d prediction rows failed (%s: %s); retrying in %.1f s",
                        rows, type(exc).__name__, str(exc)[:300], backoff,
                    )  # fmt: skip
                    log.debug("the prediction log's write failed", exc_info=True)
                    if self._abandon:
                        return
                    self._wake.wait(timeout=backoff)
                    self._wake.clear()
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.1
                with self._lock:
                    for _ in batch:
                        if not self._queue:  # emptied by a close that gave up waiting
                            break
                        seg = self._queue.popleft()[2]
                        if self.spool is not None:
                            self.spool.stored(seg)
                    self._pending -= rows
                    written = rows - (self.dead_lettered - refused)
                    self.rows_written += written
                    waiters, self._waiters = self._waiters, []
                    self._room.notify_all()
                if self._on_written is not None:
                    try:
                        self._on_written(written)
                    except Exception:
                        log.exception("prediction log callback failed")
                for loop, fut in waiters:
                    # a waiter's loop may be gone (its caller timed out): never let that stop
                    # the writer
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(_resolve, fut)
                # after the waiters are let go: profiling never holds back the hot path
                if self.profiles is not None and stored:
                    self.profiles.flushed(stored)
                if rows < self.flush_rows and not closing:
                    break
            with self._lock:
                done = self._closing and not self._queue
            if self.profiles is not None:
                if self.remote is None:
                    self.profiles.tick(force=done)
                else:
                    self._ship_side()
            if done:
                with self._lock:
                    self._room.notify_all()
                return
            if self._recover_at is not None and time.monotonic() >= self._recover_at:
                self.recover()


class RowStore:
    """Writes rows with a writer; rows the store refuses for good go to the dead letter, so
    one bad row can neither block the log nor take its neighbours with it. Used by the log's
    writer thread and by the writer process alike."""

    def __init__(self, write: Writer, dead_letter: Path | None) -> None:
        self._write = write
        #: rows the store refuses for good (and, without a spool, rows it could not take
        #: before a stop) are appended here as JSON lines instead of being lost
        self.dead_letter = dead_letter
        self.dead_lettered = 0

    def store(self, records: list[Row]) -> None:
        """Write `records`. Transient errors are raised for the caller to retry."""
        if not records:
            return
        try:
            self._write(records)
        except Exception as exc:
            if transient(exc):
                raise
            if len(records) == 1:
                self.dead_letter_rows(records, f"{type(exc).__name__}: {exc}")
                return
            half = len(records) // 2
            self.store(records[:half])
            self.store(records[half:])

    def dead_letter_rows(self, records: list[Row], reason: str) -> None:
        self.dead_lettered += len(records)
        if self.dead_letter is None:
            log.error(
                "%d prediction rows could not be stored (%s) and are lost: no dead-letter "
                "file is set",
                len(records),
                reason,
            )
            return
        lines = b"".join(
            orjson.dumps(
                {**dict(zip(FIELDS, inline(r), strict=True)), "error": reason}, default=str
            )
            + b"\n"
            for r in records
        )
        try:
            private_dir(self.dead_letter.parent)
            fd = os.open(self.dead_letter, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
            try:
                os.write(fd, lines)
            finally:
                os.close(fd)
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


def check_spool(settings: Settings) -> None:
    """Raise UnavailableError, naming the folder, when the prediction log's spool cannot hold
    a segment (a full or read-only disk, a file in the way): `relevo serve` says so before
    it starts, instead of each server process failing its start-up with a traceback."""
    if not settings.log_predictions:
        return
    folder = store_folder(settings.home, settings.resolved_database_url)
    try:
        private_dir(settings.home)
        Spool(folder).close()  # one empty segment, made and deleted
    except (OSError, UnavailableError) as exc:
        cause = exc if isinstance(exc, OSError) else exc.__cause__
        why = cause.strerror if isinstance(cause, OSError) and cause.strerror else exc
        raise UnavailableError(
            f"the prediction log cannot spool answered rows to {folder} ({why}); each server "
            "process keeps a 16 MiB segment there (two on Linux 5.14+): make it a writable "
            "folder with room for them, or set RELEVO_HOME to one"
        ) from exc


def open_prediction_log(
    relevo: Relevo,
    *,
    capacity_rows: int | None = None,
    on_written: Callable[[int], None] | None = None,
    on_error: Callable[[], None] | None = None,
) -> PredictionLog | None:
    """The prediction log of a relevo handle, as its settings ask (None when logging is off):
    spooled under the home, and with what crashed processes left in the spool stored first.
    The server and batch scoring open it here."""
    settings = relevo.settings
    if not settings.log_predictions:
        return None
    url = settings.resolved_database_url
    folder = store_folder(settings.home, url)
    try:
        private_dir(settings.home)
        spool = Spool(folder, fsync=settings.log_fsync, prepare=True)
        # an earlier version's spool of this store, named by the whole URL: replayed too
        adopt_legacy(folder, legacy_store_folder(settings.home, url))
    except OSError as exc:
        raise UnavailableError(
            f"cannot create the prediction log's spool in {folder}: {exc.strerror or exc}"
        ) from exc
    profiles = None
    if settings.profiles:
        profiles = ProfileBuilder(
            relevo.store,
            bucket_s=settings.profile_bucket_s,
            flush_s=settings.profile_flush_s,
            on_error=on_error,
        )
    remote = None
    if settings.log_writer == "process" and sys.platform != "win32" and ":memory:" not in url:
        remote = RemoteWriter(
            WriterConfig(
                database_url=url,
                dead_letter=str(settings.dead_letter_path) if settings.dead_letter_path else None,
                profiles=settings.profiles,
                bucket_s=settings.profile_bucket_s,
                flush_s=settings.profile_flush_s,
                # the rows of this server: its profiles are this replica's
                replica=profiles.replica if profiles is not None else None,
            )
        )
    plog = PredictionLog(
        relevo.store.predictions.insert_many,
        capacity_rows=capacity_rows or settings.log_queue_rows,
        flush_rows=settings.log_flush_rows,
        flush_interval_s=settings.log_flush_interval_s,
        on_written=on_written,
        on_error=on_error,
        dead_letter=settings.dead_letter_path,
        spool=spool,
        profiles=profiles,
        remote=remote,
        stored_ids=relevo.store.predictions.stored,
    )
    plog.recover()
    return plog


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


#: SQLSTATEs that refuse every row alike until an operator acts (rights revoked, a read-only
#: database or a standby after a failover): the store's state, not the rows'. Dead-lettering
#: each row for them would empty the log into a file nothing reads back; retried, the rows
#: wait in the spool and are stored once the store takes them again
_STORE_REFUSES = frozenset({"42501", "25006"})


def transient(exc: BaseException) -> bool:
    """True for errors that may pass (a lost connection, a locked database, rights or a
    read-only state an operator can restore), not for rows the store refuses (a value too
    long, a constraint)."""
    if any(cls.__name__ in _TRANSIENT for cls in type(exc).__mro__):
        return True
    # psycopg's errors carry it; SQLAlchemy's wrap the driver's in `orig`
    state = getattr(exc, "sqlstate", None) or getattr(getattr(exc, "orig", None), "sqlstate", None)
    return state in _STORE_REFUSES


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
