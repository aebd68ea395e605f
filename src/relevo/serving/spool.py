"""The prediction log's spool: answered rows on local disk before the answer leaves.

Each process appends the entries it accepts to segment files of its own under
`RELEVO_HOME/spool/<store>/` and holds an exclusive `flock` on each segment while it lives.
On Linux and the BSDs a segment is allocated whole when it is made (`posix_fallocate`, so a
full disk is an error then, never a crash later) and mapped into memory: an append is a copy
into the page cache, which a killed process leaves behind like a `write`, and which unlike a
`write` does not let go of the GIL (the worker thread that scored a batch then waited for the
busy event loop to give it back: about 4 % of a cheap model's requests/s, docs/performance.md).
A zero header ends the records; elsewhere (macOS, Windows) an append is one `write`. A segment
is deleted once every entry in it is stored. When a process dies (`kill -9`, the OOM killer)
its locks go with it: the next process to open the log finds segments nobody holds and replays
them into the store (idempotently: ids are primary keys).

Records are `<length u32><crc32 u32><payload>`: a record torn by a machine crash fails its
check and ends the segment's replay there, with a warning.

A run that must log all of its rows or none (batch scoring) writes them to a `HeldSegment`
instead: a segment under a name replays ignore (`.<stem>.held`), renamed into the spool only
when the run has succeeded. From that rename on its rows are the log's: stored by the next
replay even if the process dies; before it, a dead run's held segment is deleted unread.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import logging
import mmap
import os
import secrets
import struct
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relevo.errors import UnavailableError
from relevo.private import FILE_MODE, private_dir

log = logging.getLogger(__name__)

SUFFIX = ".spool"
HELD_SUFFIX = ".held"
_HEAD = struct.Struct("<II")
#: what follows the last record of a mapped segment (a zero length: no record is empty)
_END = bytes(_HEAD.size)
#: whether live segments are preallocated and mapped (see the module's note)
MAPPED = hasattr(os, "posix_fallocate") and sys.platform != "win32"
#: `madvise(2)`'s MADV_POPULATE_WRITE (Linux 5.14+): fault a mapping's pages in, writable
_MADV_POPULATE_WRITE = 23
#: whether replays can tell a dead process's segment from a live one (flock): without it
#: (Windows) nothing is replayed, and a batch run stores its handed-over segment itself
REPLAYS = sys.platform != "win32"

if sys.platform == "win32":  # pragma: no cover - no flock: a live segment cannot be told
    # from a dead one, so nothing is replayed (segments stay on disk)

    def _try_lock(fd: int) -> bool:
        return False

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def store_folder(home: Path, database_url: str) -> Path:
    """The spool folder of one store under a home: one folder per store, so that rows are
    replayed into the store they were meant for. A store is named by what tells it apart
    (`store_identity`): the same database reached with a rotated password, another driver or
    other connection options is the same store, and its rows are replayed."""
    identity = store_identity(database_url)
    return home / "spool" / hashlib.sha256(identity.encode()).hexdigest()[:16]


def legacy_store_folder(home: Path, database_url: str) -> Path:
    """Where earlier versions kept a store's spool: named by the whole URL, password and
    options included (see `adopt_legacy`)."""
    return home / "spool" / hashlib.sha256(database_url.encode()).hexdigest()[:16]


def store_identity(database_url: str) -> str:
    """The database a URL reaches, without what only says how: the backend, user, host
    and port (the backend's default when left out), database and the query options that
    name them too (libpq's `host`, `port`, `dbname`, `service`, and `options`, whose
    `search_path` names another schema: another store), or an SQLite file's resolved path.
    Not the driver, the password or the other query options (an `application_name`,
    `sslmode`, a timeout)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(database_url)
    except ArgumentError:  # not a URL SQLAlchemy reads: as it is (the store says why)
        return database_url
    backend = url.get_backend_name()
    if backend == "sqlite":
        name = url.database or ""
        if name and name != ":memory:" and not name.startswith("file:"):
            name = str(Path(name).expanduser().resolve())
        return f"sqlite:{name}"
    port = url.port or _DEFAULT_PORTS.get(backend)
    host = (url.host or "").lower()
    # libpq also takes the host, port and database (and a service naming them) from the
    # query: they name the database as much as the URL's own parts do
    named = {k: v if isinstance(v, str) else ",".join(v) for k, v in url.query.items()
             if k in _NAMING}  # fmt: skip
    query = "&".join(f"{k}={named[k]}" for k in sorted(named))
    return f"{backend}://{url.username or ''}@{host}:{port or ''}/{url.database or ''}?{query}"


#: query options that say which database (or schema) a URL reaches, not how
_NAMING = frozenset({"options", "host", "hostaddr", "port", "dbname", "service", "user"})


_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}


def adopt_legacy(folder: Path, legacy: Path) -> int:
    """Move the segments an earlier version left in `legacy` (a store's spool named by its
    whole URL) into `folder`, each while locked (a live one, of a process still running the
    earlier version, stays where it is); returns how many were moved."""
    if legacy == folder or not legacy.is_dir():
        return 0
    moved = 0
    for orphan in orphans(legacy):
        try:
            os.replace(orphan.path, folder / orphan.path.name)
            moved += 1
        except OSError as exc:
            log.warning("cannot move the spool segment %s into %s: %s", orphan.path, folder, exc)
        finally:
            orphan.release()
    with contextlib.suppress(OSError):
        legacy.rmdir()  # empty now (else it holds a live segment: left)
    return moved


def _records(payloads: list[bytes]) -> bytes:
    return b"".join(_HEAD.pack(len(p), crc32(p)) + p for p in payloads)


#: CPython's zlib lets go of the GIL for an input above 5 KiB: a micro-batch's entry (~11 KB
#: for 16 requests of 30 columns) is checked in pieces below that, so that the worker thread
#: that scored the batch keeps the GIL. Letting go of it, the thread waited for the event loop
#: to hand it back before it could answer the batch: ~1 ms a call beside a busy thread,
#: against ~6 us in pieces (docs/performance.md).
_CRC_PIECE = 4096


def crc32(payload: bytes) -> int:
    """`zlib.crc32(payload)`, computed without letting go of the GIL."""
    if len(payload) <= _CRC_PIECE:
        return zlib.crc32(payload)
    view = memoryview(payload)
    crc = 0
    for start in range(0, len(view), _CRC_PIECE):
        crc = zlib.crc32(view[start : start + _CRC_PIECE], crc)
    return crc


def _new_stem() -> str:
    return f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}"


def _pages(n: int) -> int:
    """`n` rounded up to whole pages."""
    return -(-n // mmap.PAGESIZE) * mmap.PAGESIZE


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    while written < len(data):  # a regular file rarely writes short; finish it
        written += os.write(fd, data[written:])


@dataclass(eq=False)
class Segment:
    """One open, locked segment file and the entries in it not stored yet."""

    path: Path
    fd: int
    number: int
    size: int = 0
    pending: int = 0
    sealed: bool = False
    #: the file mapped whole (None: appended to with `write`), and its length
    map: mmap.mmap | None = None
    capacity: int = 0

    def close(self) -> None:
        """Unmap and close (the map holds the file, and its lock, until it is closed)."""
        if self.map is not None:
            with contextlib.suppress(BufferError, ValueError):
                self.map.close()
            self.map = None
        with contextlib.suppress(OSError):
            os.close(self.fd)


class Spool:
    """This process's segments in `folder`: appended on accept, deleted once stored."""

    def __init__(
        self,
        folder: Path,
        *,
        fsync: bool = False,
        segment_bytes: int = 16 * 1024 * 1024,
        prepare: bool = False,
    ) -> None:
        """`prepare`: make each next segment ahead of need, in a thread of its own, and fault
        its pages in there (Linux 5.14+; elsewhere, or if that fails, a segment is made when
        the current one is full, as without it). In a busy server the first write to each
        page of a fresh mapped segment faulted, ~14 us a page, on the thread that scored the
        batch: ~40 us of a 16-request batch's ~11 KB append (docs/performance.md)."""
        self.folder = private_dir(folder)
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self._segments: dict[int, Segment] = {}
        self._numbers = 0
        #: guards the segments' table, their numbering and the next segment (made beside)
        self._lock = threading.Lock()
        self._closed = False
        #: the next segment, made and faulted in ahead of the appends (`prepare`)
        self._next: Segment | None = None
        self._preparing: threading.Thread | None = None
        self.prepare = prepare and MAPPED and _POPULATE is not None
        self._current = self._open_segment()
        self._prepare_next(first=self._current)

    def append(self, payload: bytes) -> int:
        """Write one record (one `write` call); returns the number of the segment holding it
        (a plain int: the queue holds no object the garbage collector has to walk).

        Raises UnavailableError when the disk refuses it (full, read-only): an entry that is
        not on disk is not accepted, rather than answered and then lost.
        """
        return self.append_many([payload])

    def append_many(self, payloads: list[bytes]) -> int:
        """Write several records with one `write` call (a micro-batch's entries), all in one
        segment; returns its number. Raises UnavailableError as `append` does."""
        data = _records(payloads)
        seg = self._current
        room = seg.capacity - _HEAD.size if seg.map is not None else self.segment_bytes
        if seg.size + len(data) > room and (seg.size or seg.map is not None):
            fresh = self._take_next(len(data))
            if fresh is None:
                fresh = self._open_segment(len(data))  # raises with the current one untouched
            seg.sealed = True
            if not seg.pending:
                self._delete(seg)
            seg = self._current = fresh
            self._prepare_next()
        if seg.map is not None:
            end = seg.size + len(data)
            seg.map[seg.size : end] = data
            seg.map[end : end + _HEAD.size] = _END
            if self.fsync:
                self._sync(seg, seg.size, end + _HEAD.size)
        else:
            try:
                _write_all(seg.fd, data)
                if self.fsync:
                    os.fsync(seg.fd)
            except OSError as exc:
                # cut a half-written record off, so that the records after it stay readable
                with contextlib.suppress(OSError):
                    os.ftruncate(seg.fd, seg.size)
                raise UnavailableError(
                    f"cannot write the prediction log's spool {seg.path}: {exc.strerror or exc}"
                ) from exc
        seg.size += len(data)
        seg.pending += len(payloads)
        return seg.number

    def _sync(self, seg: Segment, start: int, stop: int) -> None:
        assert seg.map is not None
        first = start - start % mmap.PAGESIZE  # msync takes whole pages
        try:
            seg.map.flush(first, stop - first)
        except OSError as exc:
            raise UnavailableError(
                f"cannot write the prediction log's spool {seg.path}: {exc.strerror or exc}"
            ) from exc

    def stored(self, number: int, entries: int = 1) -> None:
        """`entries` of segment `number` are in the store (or in the dead letter): a sealed
        segment with nothing left is deleted."""
        seg = self._segments.get(number)
        if seg is None:
            return
        seg.pending -= entries
        if seg.pending > 0:
            return
        if seg.sealed:
            self._delete(seg)
        elif seg.size:
            # everything in it is stored: start it over, so that a crash leaves only rows
            # not yet stored to replay
            if seg.map is not None:
                seg.map[: _HEAD.size] = _END  # the records end before the first
                seg.size = 0
            else:
                with contextlib.suppress(OSError):
                    os.ftruncate(seg.fd, 0)  # appends go to the new end
                    seg.size = 0

    @property
    def paths(self) -> set[Path]:
        """This process's own segments."""
        with self._lock:
            return {s.path for s in self._segments.values()}

    def _take_next(self, size: int) -> Segment | None:
        """The segment made ahead, if it is ready and has room for a first record of `size`
        bytes (else it stays for a later turn)."""
        with self._lock:
            seg = self._next
            if seg is None or seg.capacity - _HEAD.size < size:
                return None
            self._next = None
            return seg

    def _prepare_next(self, first: Segment | None = None) -> None:
        """Start making the next segment beside the appends, unless one is made or being
        made (after faulting `first` in: the first segment, made when the spool opens)."""
        if not self.prepare or self._next is not None:
            return
        if self._preparing is not None and self._preparing.is_alive():
            return
        self._preparing = threading.Thread(
            target=self._make_next, args=(first,), name="relevo-spool-segment", daemon=True
        )
        self._preparing.start()

    def _make_next(self, first: Segment | None) -> None:
        if first is not None:
            _populate(first)  # its appends may have begun: this only maps its pages
        try:
            seg = self._open_segment()
        except UnavailableError as exc:  # the append that needs it makes it, or says why
            log.debug("the next spool segment could not be made ahead: %s", exc)
            return
        _populate(seg)  # lets go of the GIL: the appends and the event loop go on
        with self._lock:
            if not self._closed:
                self._next = seg
                return
        self._delete(seg)  # closed meanwhile

    def close(self) -> None:
        """Delete the segments whose entries are all stored; release the others (left on
        disk, unlocked, for the next process to replay)."""
        with self._lock:
            self._closed = True
        if self._preparing is not None:
            self._preparing.join()
        for seg in list(self._segments.values()):
            if seg.pending <= 0:
                self._delete(seg)
            else:
                seg.close()
                log.warning(
                    "%d prediction log entries not yet stored are kept in %s; "
                    "they are stored when relevo next opens the log",
                    seg.pending,
                    seg.path,
                )
        self._segments.clear()

    def _open_segment(self, first: int = 0) -> Segment:
        """A new segment, room made for a first write of `first` bytes (a record larger than
        `segment_bytes` gets a segment of its own)."""
        # made under a name replays ignore, locked, then renamed into place: another process
        # must never see an unlocked new segment and take it for a dead one
        stem = _new_stem()
        tmp = self.folder / f".{stem}.new"
        flags = os.O_RDWR if MAPPED else os.O_WRONLY | os.O_APPEND
        fd: int | None = None
        capacity = 0
        mapped: mmap.mmap | None = None
        try:
            fd = os.open(tmp, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
            _try_lock(fd)
            if MAPPED:
                capacity = _pages(max(self.segment_bytes, first + _HEAD.size))
                os.posix_fallocate(fd, 0, capacity)  # a full disk says so here
                mapped = mmap.mmap(fd, capacity)
            path = self.folder / f"{stem}{SUFFIX}"
            os.replace(tmp, path)
            if self.fsync:
                _fsync_dir(self.folder)
        except OSError as exc:
            if mapped is not None:
                mapped.close()
            if fd is not None:
                os.close(fd)
                with contextlib.suppress(OSError):
                    tmp.unlink()
            raise UnavailableError(
                f"cannot make a prediction log spool segment in {self.folder}: "
                f"{exc.strerror or exc}"
            ) from exc
        with self._lock:
            self._numbers += 1
            seg = Segment(path, fd, self._numbers, map=mapped, capacity=capacity)
            self._segments[seg.number] = seg
        return seg

    def _delete(self, seg: Segment) -> None:
        with contextlib.suppress(FileNotFoundError):
            seg.path.unlink()
        seg.close()
        with self._lock:
            self._segments.pop(seg.number, None)


def _libc_madvise() -> Any:
    """libc's `madvise`, called through ctypes (which lets go of the GIL), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.madvise
    except (OSError, AttributeError):  # pragma: no cover - a libc without it
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_POPULATE = _libc_madvise()


def _populate(seg: Segment) -> bool:
    """Fault a mapped segment's pages in, writable, in one call that does not hold the GIL
    (True), so that appends copy into mapped pages; False where the kernel cannot (before
    5.14), which costs only that the appends fault the pages in themselves."""
    if _POPULATE is None or seg.map is None:
        return False
    view = ctypes.c_char.from_buffer(seg.map)  # holds the map open while it lives
    try:
        return _POPULATE(ctypes.addressof(view), seg.capacity, _MADV_POPULATE_WRITE) == 0
    finally:
        del view


class HeldSegment:
    """Records of a run held on disk until the run has succeeded (batch scoring: all of its
    rows logged, or none). Written in the spool's format under a name replays ignore, locked
    while the run lives; `hand_over()` renames it into the spool, after which any replay
    (this process's, or the next start's after a crash) stores it, idempotently; `discard()`
    deletes it. A process that dies before the hand-over leaves it unlocked, and the next
    `HeldSegment` in the folder deletes it (`sweep_held`)."""

    def __init__(self, folder: Path, *, fsync: bool = False) -> None:
        self.folder = private_dir(folder)
        self.fsync = fsync
        sweep_held(self.folder)
        self._stem = _new_stem()
        self.path = self.folder / f".{self._stem}{HELD_SUFFIX}"
        self._fd: int | None = os.open(
            self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, FILE_MODE
        )
        _try_lock(self._fd)
        self.records = 0
        self.size = 0
        self.handed_over = False

    def append_many(self, payloads: list[bytes]) -> None:
        """Write records, one `write` call. Raises UnavailableError when the disk refuses
        them (full, read-only): the run fails rather than log part of its rows."""
        assert self._fd is not None and not self.handed_over
        data = _records(payloads)
        try:
            _write_all(self._fd, data)
        except OSError as exc:
            raise UnavailableError(
                f"cannot write the prediction log's held entries {self.path}: {exc.strerror or exc}"
            ) from exc
        self.records += len(payloads)
        self.size += len(data)

    def hand_over(self) -> Path:
        """Rename the segment into the spool and release it: from now on its rows are the
        log's (any replay stores them). Returns its new path."""
        assert self._fd is not None and not self.handed_over
        if self.fsync:  # on disk before it counts: a machine crash keeps the run's rows
            os.fsync(self._fd)
        target = self.folder / f"{self._stem}{SUFFIX}"
        os.replace(self.path, target)
        if self.fsync:
            _fsync_dir(self.folder)
        self.path = target
        self.handed_over = True
        os.close(self._fd)  # the lock goes with it: a replay may take the segment now
        self._fd = None
        return target

    def discard(self) -> None:
        """The run failed: delete what it held (nothing once handed over)."""
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            os.close(self._fd)
            self._fd = None


def sweep_held(folder: Path) -> int:
    """Delete the held segments of runs that died before they succeeded (no living process
    holds them): their rows were never the log's. Returns how many were deleted."""
    deleted = 0
    for path in folder.glob(f".*{HELD_SUFFIX}"):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            if _try_lock(fd) and _same_file(fd, path):
                path.unlink()
                deleted += 1
                log.info("deleted %s, held by a batch run that stopped before it succeeded", path)
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
    return deleted


#: an orphan segment's identity (`Orphan.key`)
OrphanKey = tuple[Path, int, int]


@dataclass
class Orphan:
    """A segment left by a process that is gone, locked by this one while it is replayed."""

    path: Path
    fd: int

    def records(self) -> Iterator[bytes]:
        """The segment's payloads, in order, up to the first torn or damaged record."""
        with os.fdopen(os.dup(self.fd), "rb") as fh:
            fh.seek(0)
            offset = 0
            while True:
                head = fh.read(_HEAD.size)
                if not head:
                    return
                if head == _END:  # the end of a mapped segment's records
                    return
                if len(head) == _HEAD.size:
                    size, crc = _HEAD.unpack(head)
                    payload = fh.read(size)
                    if len(payload) == size and crc32(payload) == crc:
                        offset += _HEAD.size + size
                        yield payload
                        continue
                log.warning(
                    "the spool segment %s ends in a damaged record at byte %d (a crash while "
                    "writing it); the rest of it is skipped",
                    self.path,
                    offset,
                )
                return

    def key(self) -> OrphanKey:
        """(path, device, inode): this very file, not a later one made under its name."""
        st = os.fstat(self.fd)
        return self.path, st.st_dev, st.st_ino

    def done(self) -> None:
        """Every record is stored: delete the segment."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.release()

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def orphans(folder: Path, own: set[Path] | frozenset[Path] = frozenset()) -> Iterator[Orphan]:
    """The segments in `folder` that no living process holds, each locked for the caller
    (who must `done()` or `release()` it)."""
    if not folder.is_dir():
        return
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        if path in own:
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # replayed and deleted by another process meanwhile
            continue
        except OSError as exc:  # not readable (a permission, a broken link): the others are
            log.warning("cannot read the spool segment %s (%s); it is skipped", path, exc)
            continue
        if not _try_lock(fd) or not _same_file(fd, path):
            os.close(fd)
            continue
        yield Orphan(path, fd)


def _same_file(fd: int, path: Path) -> bool:
    # the lock was won on a file another process already replayed and unlinked
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _fsync_dir(folder: Path) -> None:
    if sys.platform == "win32":  # pragma: no cover
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
