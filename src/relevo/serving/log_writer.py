"""The prediction log's writer process: stores logged rows and profiles them beside the server.

Turning entries into rows, inserting them and profiling them is per-row Python work. In the
serving process it would hold the GIL that the event loop needs (measured with py-spy: the
writer thread and its profiles held 11 % of the GIL at 5,000 requests/s); in a process of its
own it runs on another core. The server's writer thread (`relevo.serving.log`) only hands each
batch of serialised entries over a pipe and waits for the answer, with the GIL released.

The spool is still written by the serving process before an answer leaves, so a writer process
that dies loses nothing: the batch it held is sent again to a new one (inserts are idempotent).

Frames, parent to child: `<kind u8><length u32><data>`, kind `W` (data: records
`<length u32><payload>`), `R` (the same, of a spool replay: profiled only where not stored
before), `S` (the server's quality counts and shadow outputs, for the
profiles) or `C` (close: store the profiles, answer, exit). Child to parent, one
per frame: `<status u8><stored u32><dead u32><length u32><message>`, status 0 ok, 1 a failure
worth retrying (the store is down), 2 a failure that is not.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import orjson

from relevo.errors import UnavailableError

log = logging.getLogger(__name__)

_FRAME = struct.Struct("<BI")
_REPLY = struct.Struct("<BIII")
_LEN = struct.Struct("<I")
OK, RETRY, FAILED = 0, 1, 2
#: the writer process's first-generation threshold of the cyclic garbage collector
_GC_YOUNG = 20_000


@dataclass(frozen=True)
class WriterConfig:
    """What the writer process needs: where to store, where refused rows go, how to profile."""

    database_url: str
    dead_letter: str | None
    profiles: bool
    bucket_s: int = 60
    flush_s: float = 10.0
    replica: str | None = None


class WriterError(UnavailableError):
    """The writer process could not store a batch (the store is down, or the process died)."""

    def __init__(self, message: str, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class RemoteWriter:
    """The serving process's end: one writer process, started on first use and again if it
    dies. Called from the log's writer thread only."""

    def __init__(self, config: WriterConfig) -> None:
        self.config = config
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: Any = None  # to the child
        self._in: Any = None  # from the child
        self._lock = threading.Lock()
        self.starts = 0

    def write(self, payloads: list[bytes], replay: bool = False) -> tuple[int, int]:
        """Store the entries `payloads` (serialised by `entries.encode`) and profile them (of
        a `replay`, a dead process's, those not stored before); returns (rows stored, rows
        refused for good and dead-lettered). Raises WriterError."""
        # written piece by piece through the pipe's buffer: no frame-sized copy is made here
        size = sum(map(len, payloads)) + _LEN.size * len(payloads)
        parts = chain.from_iterable((_LEN.pack(len(p)), p) for p in payloads)
        return self._call(b"R" if replay else b"W", parts, size)

    def side(self, data: bytes) -> None:
        """Hand the serving process's quality counts and shadow outputs (`ProfileBuilder.side`)
        to the process's profiles. Raises WriterError."""
        self._call(b"S", (data,), len(data))

    def close(self, timeout_s: float = 30.0) -> None:
        """Let the process store its profiles and exit. One that has not done so within
        `timeout_s` (its store hangs) is killed: a stop never hangs on the store. What it had
        not stored is still in the spool."""
        proc = self._proc
        if proc is None:
            return
        timer = threading.Timer(timeout_s, self._overdue, (proc, timeout_s))
        timer.daemon = True
        timer.start()
        try:
            with self._lock:  # after a call in flight (which the timer ends if it hangs)
                if self._proc is None:
                    return
                try:
                    self._send(b"C", (), 0)
                    self._reply()
                except (OSError, WriterError, ValueError):
                    log.warning("the prediction log's writer process did not close cleanly")
                self._stop(timeout_s)
        finally:
            timer.cancel()

    def kill(self) -> None:
        """End the process now, from any thread: a call waiting for it fails at once."""
        if self._proc is not None:
            _kill(self._proc)

    @staticmethod
    def _overdue(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
        if proc.poll() is None:
            log.warning(
                "the prediction log's writer process did not stop within %.0f s (its store "
                "does not answer); killed it: rows it had not stored stay in the spool",
                timeout_s,
            )
            _kill(proc)

    def _call(self, kind: bytes, parts: Iterable[bytes], size: int) -> tuple[int, int]:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                if self._proc is not None:  # it died between batches (killed, out of memory)
                    log.warning(
                        "the prediction log's writer process (pid %d) ended with exit code %s "
                        "between batches: starting another; the rows it had not stored are "
                        "sent again",
                        self._proc.pid,
                        self._proc.returncode,
                    )
                    self._stop(1.0)
                self._start()
            try:
                self._send(kind, parts, size)
                return self._reply()
            except (OSError, ValueError) as exc:  # it died: the next call starts another
                self._stop(1.0)
                raise WriterError(f"the prediction log's writer process stopped ({exc})") from exc

    def _send(self, kind: bytes, parts: Iterable[bytes], size: int) -> None:
        self._out.write(_FRAME.pack(kind[0], size))
        self._out.writelines(parts)
        self._out.flush()

    def _reply(self) -> tuple[int, int]:
        head = _read_exact(self._in, _REPLY.size)
        status, stored, dead, size = _REPLY.unpack(head)
        message = _read_exact(self._in, size).decode() if size else ""
        if status != OK:
            raise WriterError(message or "the writer process failed", transient=status == RETRY)
        return stored, dead

    def _start(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "relevo.serving.log_writer",
                    "--read-fd",
                    str(to_child_r),
                    "--write-fd",
                    str(from_child_w),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(to_child_r, from_child_w),
                env={**os.environ, "RELEVO_LOG_WRITER_CONFIG": orjson.dumps(
                    asdict(self.config)).decode()},
                # a Ctrl-C in the terminal reaches the whole process group: the writer must
                # outlive the server's drain, so it leaves on the close frame or end of input
                start_new_session=True,
            )  # fmt: skip
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._out = os.fdopen(to_child_w, "wb", buffering=1 << 20)
        self._in = os.fdopen(from_child_r, "rb")
        self.starts += 1

    def _stop(self, timeout_s: float) -> None:
        proc, self._proc = self._proc, None
        for f in (self._out, self._in):
            with contextlib.suppress(OSError, ValueError):
                f.close()
        self._out = self._in = None
        if proc is not None:
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        proc.kill()


def _read_exact(f: Any, n: int) -> bytes:
    parts = []
    while n > 0:
        data = f.read(n)
        if not data:
            raise ValueError("end of input")
        parts.append(data)
        n -= len(data)
    return b"".join(parts)


# ---- the writer process ------------------------------------------------------------------


def _records(data: memoryview) -> Iterator[bytes]:
    at, end = 0, len(data)
    while at < end:
        (size,) = _LEN.unpack_from(data, at)
        at += _LEN.size
        yield bytes(data[at : at + size])
        at += size


class _FrameReader:
    """Reads the server's frames into one buffer, used again frame after frame: a new
    megabyte for every frame (and a second one to join the pipe's pieces) cost ~1 ms of page
    faults and copies per 1,400-row batch. A buffer grown past `keep` bytes (a batch-scoring
    entry's frame) is let go after its frame."""

    def __init__(self, src: Any, size: int = 1 << 20, keep: int = 16 << 20) -> None:
        self.src = src
        self.keep = keep
        self._initial = size
        self._buf = bytearray(size)

    def read(self, n: int) -> memoryview:
        """The next `n` bytes (valid until the next call). Raises ValueError at end of input."""
        if n > len(self._buf) or len(self._buf) > self.keep:
            self._buf = bytearray(max(n, self._initial))
        view = memoryview(self._buf)[:n]
        got = 0
        while got < n:
            k = self.src.readinto(view[got:])
            if not k:
                raise ValueError("end of input")
            got += k
        return view


class _Profiler:
    """The writer process's profiling thread: stored entries are profiled while the next batch
    is inserted (SQLite and NumPy release the GIL for much of their work). A bounded queue: a
    profiler that falls behind holds the inserts back instead of memory growing."""

    def __init__(self, profiles: Any, flush_s: float) -> None:
        self.profiles = profiles
        self.flush_s = flush_s
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=8)
        self._thread = threading.Thread(target=self._run, name="relevo-log-profiles", daemon=True)
        self._thread.start()

    def put(self, kind: str, item: Any) -> None:
        self._queue.put((kind, item))

    def stop(self) -> None:
        """Profile what is queued, store the profiles, end the thread."""
        self._queue.put(("stop", None))
        self._thread.join()

    def _run(self) -> None:
        profiles = self.profiles
        while True:
            try:
                kind, item = self._queue.get(timeout=self.flush_s)
            except queue.Empty:  # idle: the profiles are still stored on time
                profiles.tick()
                continue
            if kind == "stop":
                profiles.close()
                return
            try:  # never let one bad item end the thread (the queue would then fill for good)
                if kind == "rows":
                    profiles.flushed(item)
                else:
                    profiles.take_side(item)
                profiles.tick()
            except Exception:
                log.exception("profiling logged predictions failed")


def serve(read_fd: int, write_fd: int, config: WriterConfig) -> int:
    """The writer process's loop: a frame in, its rows stored and profiled, a reply out."""
    from relevo.serving.entries import decode, rows_of, unstored
    from relevo.serving.log import RowStore, transient
    from relevo.serving.profiling import ProfileBuilder
    from relevo.store import Store

    store = Store(config.database_url, migrate=False)
    rows_store = RowStore(
        store.predictions.insert_many,
        Path(config.dead_letter) if config.dead_letter else None,
    )
    profiles = None
    if config.profiles:
        profiles = ProfileBuilder(
            store, bucket_s=config.bucket_s, flush_s=config.flush_s, replica=config.replica
        )
    # what lives now (the modules, the store) stays for good: out of the cyclic collector's
    # walks, which the rows of every batch set off
    gc.collect()
    gc.freeze()
    # a batch's objects (its rows, its entries' outputs) live until it is stored and profiled
    # and then go by reference counting: at the default threshold (700) the collector walked
    # them 5 times per 1,400-row batch, ~15 % of the CPU that reading the entries and making
    # the rows take; collections now happen only when objects really pile up
    gc.set_threshold(_GC_YOUNG, *gc.get_threshold()[1:])
    src = os.fdopen(read_fd, "rb", buffering=0)
    frames = _FrameReader(src)
    out = os.fdopen(write_fd, "wb")
    profiler = _Profiler(profiles, config.flush_s) if profiles is not None else None

    def reply(status: int, stored: int = 0, dead: int = 0, message: str = "") -> None:
        text = message.encode()[:4000]
        try:
            out.write(_REPLY.pack(status, stored, dead, len(text)) + text)
            out.flush()
        except BrokenPipeError:
            # the server is gone (killed outright): the next read ends the loop, and its
            # spool keeps what it had not stored for the next start to replay
            pass

    while True:
        try:
            kind, size = _FRAME.unpack(frames.read(_FRAME.size))
            data = frames.read(size)
        except ValueError:
            break  # the server is gone: its spool keeps what it had not stored
        if kind == ord("C"):
            if profiler is not None:
                profiler.stop()
                profiler = None
            reply(OK)
            break
        if kind == ord("S"):
            if profiler is not None:
                profiler.put("side", bytes(data))
            reply(OK)
            continue
        payloads = list(_records(data))
        refused = rows_store.dead_lettered
        try:
            # each entry read once: its rows are stored, then profiled from the same values
            entries = [decode(p) for p in payloads]
            rows = rows_of(entries, shared=True)  # a batch's features stored once
            if kind == ord("R") and profiler is not None:
                # a dead process's entries: those it stored, it profiled (`unstored`); asked
                # before they are stored here
                entries = [entries[k] for k in unstored(entries, store.predictions.stored)]
            rows_store.store(rows)
        except Exception as exc:
            status = RETRY if transient(exc) else FAILED
            log.warning("storing %d prediction log entries failed: %s", len(payloads), exc)
            reply(status, message=f"{type(exc).__name__}: {exc}")
            continue
        dead = rows_store.dead_lettered - refused
        reply(OK, len(rows) - dead, dead)
        if profiler is not None:  # profiled while the next batch is stored
            profiler.put("rows", entries)
    if profiler is not None:
        profiler.stop()
    store.close()
    with contextlib.suppress(OSError):  # a reply the gone server never read: dropped
        out.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="relevo's prediction log writer (internal)")
    ap.add_argument("--read-fd", type=int, required=True)
    ap.add_argument("--write-fd", type=int, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="relevo log writer: %(message)s")
    config = WriterConfig(**orjson.loads(os.environ["RELEVO_LOG_WRITER_CONFIG"]))
    return serve(args.read_fd, args.write_fd, config)


if __name__ == "__main__":
    sys.exit(main())
