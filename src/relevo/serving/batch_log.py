"""A batch run's prediction log entries: on disk while the run goes, the log's once it succeeds.

Each scored chunk's entries, `RELEVO_LOG_FLUSH_ROWS` rows each (one store write), are written
at once, serialised, to a held segment in the log's spool folder (`spool.HeldSegment`): memory
stays flat however long the file, and the log's writer later takes the rows a store write at a
time. When the run has succeeded (every chunk scored,
the output in place) the segment is renamed into the spool and stored by the log's replay, as a
crashed process's segment would be; a failed run deletes it, so nothing of it is logged. The
log is opened when the run starts, so that its writer process starts (imports, connects to the
store) while the file is scored. What a crash at each point can lose: docs/serving.md, "The
prediction log of a run".
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from pathlib import Path
from types import TracebackType

from relevo.context import Relevo
from relevo.errors import UnavailableError
from relevo.serving import spool
from relevo.serving.entries import LogEntry, encode, entry_size
from relevo.serving.log import PredictionLog, open_prediction_log
from relevo.serving.log_writer import RemoteWriter, WriterError
from relevo.serving.spool import HeldSegment, Orphan, store_folder

log = logging.getLogger(__name__)


class HeldLog:
    """The log entries of one batch run, held on disk until `hand_over()`; discarded when the
    run fails (the `with` block raises)."""

    def __init__(self, relevo: Relevo) -> None:
        settings = relevo.settings
        #: rows per held piece: one store write of the log's writer
        self.piece_rows = settings.log_flush_rows
        self.rows = 0
        folder = store_folder(settings.home, settings.resolved_database_url)
        try:
            self.segment = HeldSegment(folder, fsync=settings.log_fsync)
        except OSError as exc:
            raise UnavailableError(
                f"cannot hold the prediction log's entries in {folder}: {exc.strerror or exc}"
            ) from exc
        try:
            self._log: PredictionLog | None = open_prediction_log(relevo)
        except BaseException:
            self.segment.discard()
            raise
        self._starting: threading.Thread | None = None
        remote = self._log.remote if self._log is not None else None
        if remote is not None:
            self._starting = threading.Thread(
                target=_start, args=(remote,), name="relevo-batch-log-start", daemon=True
            )
            self._starting.start()

    def __enter__(self) -> HeldLog:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.segment.discard()  # a no-op once committed
        self._close()

    def add(self, entry: LogEntry) -> None:
        """Write a scored chunk's entry to disk, in pieces of `piece_rows` rows."""
        step, n = self.piece_rows, entry.n
        pieces = [entry] if n <= step else [entry.piece(i, i + step) for i in range(0, n, step)]
        payloads = [encode(piece) for piece in pieces]
        self.segment.append_many(payloads)
        self.rows += entry.n

    def hand_over(self) -> Path:
        """The run succeeded: the entries are the log's from now on (a rename into the spool),
        stored by `store()`, or by the next start if this process stops first. Returns where
        the segment went."""
        return self.segment.hand_over()

    def store(self) -> Path:
        """Store the handed-over entries: a process that dies (or is stopped) meanwhile leaves
        the rest in the spool for the next start. Returns the segment's path (gone once
        stored)."""
        path = self.segment.path
        plog = self._log
        if plog is None:  # logging is off: cannot happen here, the run held entries
            return path
        plog.recover()  # the spool's segments nobody holds: this one among them
        if spool.REPLAYS:
            _recover_again(plog, path)
        if not spool.REPLAYS and path.exists():
            _put_all(plog, path)  # no replays here: through this process's own queue
        self._close()
        if not spool.REPLAYS:
            path.unlink(missing_ok=True)  # its rows are stored, or in this process's spool
        if plog.dead_lettered:
            warnings.warn(
                f"{plog.dead_lettered} scored rows could not be stored in the prediction log; "
                f"they are kept in {plog.dead_letter}",
                stacklevel=3,
            )
        if path.exists():  # the store did not take them (down, busy): kept for next start
            warnings.warn(
                f"the prediction log's store did not take this run's {self.rows} rows yet; "
                f"they are kept in {path} and stored when relevo next opens the log "
                "(relevo serve, relevo predict)",
                stacklevel=3,
            )
        return path

    def _close(self) -> None:
        if self._starting is not None:
            self._starting.join()
            self._starting = None
        if self._log is not None:
            self._log.close()
            self._log = None


#: how long the end of a run keeps trying a store that failed the replay of its rows
RECOVERY_RETRY_S = 3.0


def _recover_again(plog: PredictionLog, path: Path) -> None:
    """A store busy for a moment (a SQLite file another writer holds, a dropped connection)
    gets more tries, a little apart, before the run leaves its rows for the next start: the
    command run next (relevo drift, relevo export) should find them."""
    deadline = time.monotonic() + RECOVERY_RETRY_S
    pause = 0.1
    while path.exists() and plog.recovery_pending and time.monotonic() < deadline:
        time.sleep(pause)
        pause = min(pause * 2, 1.0)
        plog.recover()


def _start(remote: RemoteWriter) -> None:
    """Start the log's writer process with an empty batch, while the file is scored."""
    try:
        remote.write([])
    except WriterError as exc:  # the hand-over starts it again, and reports what fails then
        log.debug("starting the prediction log's writer process failed: %s", exc)


def _put_all(plog: PredictionLog, path: Path) -> None:
    """Queue a handed-over segment's entries in `plog` (which stores them before it closes)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        for payload in Orphan(path, fd).records():
            plog.put_encoded_blocking(payload, entry_size(payload))
    finally:
        os.close(fd)
