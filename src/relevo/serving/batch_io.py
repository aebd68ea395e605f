"""Batch scoring's files: the output checked before any work, the input read in chunks, the
output written chunk by chunk (CSV appended, Parquet as row groups)."""

from __future__ import annotations

import os
import queue
import threading
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from relevo.errors import InvalidInputError, Problem
from relevo.tables import read_table

WRITABLE = (".csv", ".parquet", ".pq")
T = TypeVar("T")
_END = object()


def check_output(output: Path, source: Path | None = None) -> None:
    """Refuse, before anything is scored, an output batch scoring could not write."""
    suffix = output.suffix.lower()
    if suffix not in WRITABLE:
        raise InvalidInputError(
            f"cannot write {output}: unknown file type {suffix or '(none)'}; use .csv or .parquet"
        )
    folder = output.parent if str(output.parent) else Path(".")
    if not folder.is_dir():
        raise InvalidInputError(f"cannot write {output}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InvalidInputError(f"cannot write {output}: folder {folder} is not writable")
    if output.is_dir():
        raise InvalidInputError(f"cannot write {output}: it is a folder")
    if source is not None and output.exists() and output.resolve() == source.resolve():
        raise InvalidInputError(f"cannot write {output}: it is the input file")


def iter_chunks(
    source: Path,
    rows: int,
    text: Callable[[str], bool] | None = None,
    floats: frozenset[str] = frozenset(),
) -> Iterator[pd.DataFrame]:
    """The rows of a .csv (.csv.gz) or .parquet file `rows` at a time (other types: read
    whole).

    `text(name)` names the columns kept as the file says them: a CSV's are read as text, not
    guessed (the code "02" stays "02", a column empty in a chunk is not a column of floats, a
    large ID with a gap does not become 1e+17); a Parquet file's integers with a gap stay
    integers (nullable), not floats. Without `text`, pandas guesses every column's type. A CSV's
    columns `floats` are floats in every chunk (pandas makes a chunk of whole numbers integers).
    """
    suffix = source.suffix.lower()
    csv = is_csv(source)
    if not source.is_file() or not (csv or suffix in (".parquet", ".pq")):
        frame = read_table(source, "input file")  # the reader's own errors name the file
        for start in range(0, len(frame), rows):
            yield frame.iloc[start : start + rows]
        return
    try:
        if csv:  # pandas reads a .csv.gz through gzip, chunk by chunk as a .csv
            # the header as written: pandas reads a second `age` as `age.1`, and would score
            # the first and pass the other through (blank names, as a spreadsheet's trailing
            # commas leave, name no column)
            written = pd.read_csv(source, header=None, nrows=1, dtype=str).iloc[0].dropna()
            refuse_repeated(written, f"input file {source}")
            dtype = None
            if text is not None:
                header = pd.read_csv(source, nrows=0).columns
                dtype = {name: str for name in header if text(name)}
            with pd.read_csv(source, chunksize=rows, dtype=dtype) as reader:
                start = 0
                for chunk in reader:
                    for name in floats.intersection(chunk.columns):
                        if pd.api.types.is_integer_dtype(chunk[name].dtype):
                            chunk[name] = chunk[name].astype(np.float64)
                    chunk.index = pd.RangeIndex(start, start + len(chunk))
                    start += len(chunk)
                    yield chunk
            return
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(source)
        refuse_repeated(parquet.schema_arrow.names, f"input file {source}")
        start = 0
        for batch in parquet.iter_batches(batch_size=rows):
            chunk = _exact(batch, text)
            chunk.index = pd.RangeIndex(start, start + len(chunk))
            start += len(chunk)
            yield chunk
    except pd.errors.EmptyDataError:
        raise InvalidInputError(f"input file {source} is empty") from None
    except (ValueError, OSError, EOFError, zlib.error) as exc:  # EOFError: a cut .csv.gz
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInputError(f"cannot read input file {source}: {first}") from exc


def is_csv(path: Path) -> bool:
    """Whether batch scoring reads `path` as CSV: a .csv file, or one compressed with gzip."""
    name = path.name.lower()
    return name.endswith(".csv") or name.endswith(".csv.gz")


def refuse_repeated(names: Iterable[Any], what: str) -> None:
    """Refuse input naming a column more than once (which would the model take?), as the
    registration refuses such reference data and V2 a tensor given twice."""
    seen: set[str] = set()
    twice: list[str] = []
    for name in map(str, names):
        if name in seen and name not in twice:
            twice.append(name)
        seen.add(name)
    if twice:
        raise InvalidInputError(
            f"{what} names {len(twice)} column(s) more than once",
            [Problem("a second column of this name", column=name) for name in twice],
        )


def _exact(batch: Any, text: Callable[[str], bool] | None) -> pd.DataFrame:
    """A Parquet record batch as a DataFrame; integers with a gap in the `text` columns as
    nullable integers (pandas makes them floats, which 1e17 + 1 does not survive)."""
    import pyarrow as pa

    chunk = batch.to_pandas()
    if text is None:
        return chunk
    for i, field in enumerate(batch.schema):
        column = batch.column(i)
        if pa.types.is_integer(field.type) and column.null_count and text(field.name):
            chunk[field.name] = column.to_pandas(types_mapper=_nullable).array
    return chunk


def _nullable(kind: Any) -> Any:
    """pandas' nullable integer dtype for an Arrow integer type (Int64 for int64...)."""
    return pd.api.types.pandas_dtype(str(kind).replace("int", "Int").replace("uInt", "UInt"))


def read_ahead(items: Iterator[T], depth: int = 1) -> Generator[T, None, None]:
    """`items`, made by a thread of their own up to `depth` ahead of the consumer: reading and
    checking the next chunk (pandas and pyarrow release the GIL while they parse) overlaps
    scoring this one. Memory stays bounded; the thread's errors are raised here, in order; a
    consumer that stops early (an error, `close()`) stops the thread."""
    handoff: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def give(ok: bool, item: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put((ok, item), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not give(True, item):
                    return
            give(True, _END)
        except BaseException as exc:  # handed to the consumer, raised there
            give(False, exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a generator's `with` blocks (the open file) end in its thread

    thread = threading.Thread(target=produce, name="relevo-batch-reader", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = handoff.get()
            if not ok:
                raise item
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        thread.join()


class Behind:
    """Calls run in order by a thread of their own, up to `depth` calls behind the caller:
    writing a scored chunk (pyarrow releases the GIL while it encodes and compresses) and
    keeping its log entries overlap scoring the next. An error stops the calls after it and
    is raised by the next `submit` or by `finish`."""

    def __init__(self, depth: int = 2) -> None:
        self._calls: queue.Queue[Callable[[], object] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._dropping = False
        self._thread: threading.Thread | None = None

    def submit(self, call: Callable[[], object]) -> None:
        """Queue `call` (waits while `depth` calls are pending: memory stays bounded)."""
        self._raise()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="relevo-batch-writer")
            self._thread.daemon = True
            self._thread.start()
        self._calls.put(call)

    def finish(self) -> None:
        """Wait for every call; raise the first error."""
        self._stop()
        self._raise()

    def __enter__(self) -> Behind:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        self._dropping = kind is not None  # the caller failed: pending calls are dropped
        self._stop()

    def _run(self) -> None:
        while (call := self._calls.get()) is not None:
            if self._error is None and not self._dropping:  # after a failure, nothing more
                try:
                    call()
                except BaseException as exc:  # raised in the caller's thread
                    self._error = exc

    def _stop(self) -> None:
        if self._thread is not None:
            self._calls.put(None)
            self._thread.join()
            self._thread = None

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


class ChunkWriter:
    """Writes scored chunks to a .csv or .parquet file; a failed run removes the partial file
    (written under a temporary name, moved into place at the end)."""

    def __init__(self, path: Path, source: Path | None = None) -> None:
        self.path = path
        #: the input file when it is Parquet: its own column types for the columns the first
        #: chunk leaves without one (empty there)
        self._source = source if source is not None and _is_parquet(source) else None
        self._tmp = path.with_name(f".{path.name}.partial")
        self._parquet = _is_parquet(path)
        self._writer: Any = None
        self._schema: Any = None
        self._first = True
        self._committed = False

    def commit(self) -> None:
        """Finish the file and move it into place (the run succeeded)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._first:  # no rows: still a valid (empty) file
            pd.DataFrame().to_csv(self._tmp, index=False)
        os.replace(self._tmp, self.path)
        self._committed = True

    def __enter__(self) -> ChunkWriter:
        return self

    def write(self, frame: pd.DataFrame) -> None:
        if self._parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            if self._writer is None:
                first = pa.Table.from_pandas(frame, preserve_index=False).schema
                # a column with no value in the first chunk has no type yet (Arrow's null): it
                # takes the input Parquet file's type for it, or is text (the columns a CSV
                # passes through are read as text), so that the values of later chunks fit
                given = pq.read_schema(self._source) if self._source is not None else None

                def typed(f: Any) -> Any:
                    if not pa.types.is_null(f.type):
                        return f
                    if given is not None and f.name in given.names:
                        return f.with_type(given.field(f.name).type)
                    return f.with_type(pa.string())

                self._schema = pa.schema([typed(f) for f in first], metadata=first.metadata)
                self._writer = pq.ParquetWriter(self._tmp, self._schema)
            table = pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)
            self._writer.write_table(table)
        else:
            frame.to_csv(
                self._tmp, mode="w" if self._first else "a", header=self._first, index=False
            )
        self._first = False

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._writer is not None:
            self._writer.close()
        if not self._committed:
            self._tmp.unlink(missing_ok=True)
