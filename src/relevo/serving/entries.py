"""A prediction log entry: the rows one request got answered, and their serialised form.

Built once per request on the hot path (`LogEntry`, `encode`); read back once where it is
stored (`decode`, in the log's writer process or thread, or when a spool is replayed), and
both its store rows (`rows_of`) and its profile (`relevo.serving.profiling`) are made from
what was read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import orjson

from relevo.store import predictions
from relevo.store.predictions import Inputs, Row

#: a stored row's fields with its features inline, in order (what a dead letter keeps): the
#: store's columns, then the row's source and challenger
FIELDS = predictions.FIELDS

#: of the serialised entry, first in every payload: 2 when it carries its number columns as a
#: block of float64 after its outputs, 1 when not (and every entry before the block existed)
_VERSION = 1
_VERSION_BLOCK = 2
#: as 2, the features left out: they are the number block's columns (`LogEntry.features` None)
_VERSION_DERIVED = 3
#: a header's fields in each format; an entry with a source (a batch run's) adds it last, one
#: field more, which versions before the source existed refuse as an entry they cannot read
#: (its spool segment is kept for a version that can). A fallback entry adds its challenger
#: after the source (null when none), two fields more, which versions before the challenger
#: existed refuse likewise
_HEAD = {_VERSION: 9, _VERSION_BLOCK: 10, _VERSION_DERIVED: 10}
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_FLOAT = np.dtype("<f8")


@dataclass(frozen=True, slots=True)
class LogEntry:
    """The rows one request (or batch) got answered: what the log stores of them."""

    deployment: str
    model_name: str
    model_version: int
    created_at: float  # Unix time
    ids: Sequence[str]
    #: column -> n values: what the log stores; None when they are exactly `numbers`' columns
    #: (every value a float: the writer makes them from the block, off the request path)
    features: Mapping[str, Sequence[Any]] | None
    outputs: Sequence[dict[str, Any]]
    #: the request's latency, or one per row (the requests of a micro-batch in one entry)
    latency_ms: float | Sequence[float]
    keys: Sequence[Any] | None = None
    #: champion | challenger | fallback (the champion answered rows its challenger failed)
    role: str = "champion"
    #: the number columns' names, and their validated values as one float64 matrix (rows x
    #: columns, NaN for null): an all-numeric model's entries of several rows carry them, and
    #: its profiles read them instead of parsing `features` (which is what the log stores)
    numeric: tuple[str, ...] = ()
    numbers: np.ndarray | None = None
    #: where the rows were answered when not by a request: "batch" for a batch run's, whose
    #: `latency_ms` is their chunk's model call (`relevo.store.predictions.BATCH`)
    source: str | None = None
    #: of a `fallback` entry: the challenger that failed on its rows ("name:version"), which
    #: the gates charge them to
    challenger: str | None = None

    @property
    def n(self) -> int:
        return len(self.ids)

    def piece(self, start: int, stop: int) -> LogEntry:
        """Rows start..stop of this entry, as an entry of their own."""
        return replace(
            self,
            ids=self.ids[start:stop],
            features=(
                None
                if self.features is None
                else {k: v[start:stop] for k, v in self.features.items()}
            ),
            outputs=self.outputs[start:stop],
            latency_ms=(
                self.latency_ms
                if isinstance(self.latency_ms, int | float)
                else self.latency_ms[start:stop]
            ),
            keys=None if self.keys is None else self.keys[start:stop],
            numbers=None if self.numbers is None else self.numbers[start:stop],
        )


def encode(entry: LogEntry) -> bytes:
    """An entry as bytes: what the spool keeps and the queue holds (one bytes object per
    entry, which the garbage collector never has to walk).

    Three JSON documents on one line each: the header (ids, model, time, keys; a batch run's
    source, then a fallback's challenger, last), the features, the outputs. A one-row entry
    (most requests) carries its features as the very object the store keeps, so the writer
    stores the bytes as they are; a larger one carries them column by column (stored so,
    once), and, when the server has them, its number columns' values as a block of
    little-endian float64 after the outputs, rows x columns (their names end the header,
    before a source): what the writer profiles without parsing the features.
    """
    block = entry.numbers if entry.n > 1 and entry.numeric else None
    if block is not None and block.shape != (entry.n, len(entry.numeric)):
        block = None  # never a block that does not match its rows: the features say it all
    derived = entry.features is None and block is not None
    form = _VERSION if block is None else _VERSION_DERIVED if derived else _VERSION_BLOCK
    head = [
        form,
        entry.deployment,
        entry.model_name,
        entry.model_version,
        entry.created_at,
        entry.ids,
        entry.latency_ms,
        entry.keys,
        entry.role,
    ]
    if block is not None:
        head.append(entry.numeric)
    if entry.source is not None or entry.challenger is not None:
        head.append(entry.source)
    if entry.challenger is not None:
        head.append(entry.challenger)
    given = entry.features if entry.features is not None or derived else _from_block(entry)
    if entry.n == 1:
        assert given is not None
        features: Any = {k: v[0] for k, v in given.items()}
        outputs: Any = entry.outputs[0]
    else:
        features = given if given is None or type(given) is dict else dict(given)
        outputs = entry.outputs
    # orjson never writes a raw newline (it escapes them in strings): a safe separator; the
    # block comes last, where the reader splits no more
    docs = [_dumps(doc) for doc in (head, features, outputs)]
    if block is not None:
        docs.append(np.ascontiguousarray(block, dtype=_FLOAT).tobytes())
    return b"\n".join(docs)


def _from_block(entry: LogEntry) -> dict[str, list[float]]:
    """The features of an entry that left them to its number block, made from it."""
    if entry.numbers is None or len(entry.numeric) != entry.numbers.shape[1]:
        raise ValueError("a log entry without features has no number block to make them from")
    return _block_columns(entry.numeric, entry.numbers)


def _block_columns(numeric: tuple[str, ...], numbers: np.ndarray) -> dict[str, list[float]]:
    """A block's rows column by column, as Python floats: serialised, the bytes the server
    would have written for the same floats (orjson writes a float64 alike either way)."""
    return dict(zip(numeric, numbers.T.tolist(), strict=True))


def _dumps(doc: Any) -> bytes:
    try:
        # default=str: a value JSON has no type for (a timestamp column) is kept as its text
        return orjson.dumps(doc, default=str, option=_OPTIONS)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits: kept as its digits
        return orjson.dumps(_text_big_ints(doc), default=str, option=_OPTIONS)


def entry_size(payload: bytes) -> int:
    """The rows of one serialised entry, read from its header alone. Raises ValueError on a
    payload that is not one."""
    return len(_header(payload.split(b"\n", 1)[0])[5])


class DecodedEntry(NamedTuple):
    """A serialised entry read back: parsed once, then made into store rows and profiled (a
    tuple: made once per entry, cheaper than a frozen dataclass)."""

    deployment: str
    model_name: str
    model_version: int
    created_at: float  # Unix time
    ids: list[str]
    latency_ms: float | list[float]
    keys: list[Any] | None
    role: str
    #: one row: its features and output as the JSON objects the store keeps, unparsed (the
    #: profiles parse the one-row entries of a batch together); more rows: the outputs,
    #: parsed, and the features left as serialised (`features_json`) until a reader asks
    #: for their columns (`columns_of`), which the profiles skip when `numbers` has them
    features: bytes | None
    outputs: bytes | list[dict[str, Any]]
    #: more rows: the features as serialised (what `rows_of(..., shared=True)` stores once)
    features_json: bytes | None = None
    #: more rows, when the server sent them: the number columns' names and values
    #: (`LogEntry.numbers`)
    numeric: tuple[str, ...] = ()
    numbers: np.ndarray | None = None
    #: "batch" for a batch run's rows, None for a request's (`LogEntry.source`)
    source: str | None = None
    #: the challenger a fallback entry's rows fell back from (`LogEntry.challenger`)
    challenger: str | None = None

    @property
    def n(self) -> int:
        return len(self.ids)


def decode(payload: bytes) -> DecodedEntry:
    """A serialised entry (`encode`), read back. Raises ValueError on a payload that is not
    one (orjson's errors are ValueErrors too)."""
    head, rest = payload.split(b"\n", 1)
    doc = _header(head)
    form = doc[0]
    dep, name, version, created, ids, latency, keys, role = doc[1:9]
    marks = doc[_HEAD[form] :]
    source = marks[0] if marks else None
    challenger = marks[1] if len(marks) > 1 else None
    if len(ids) == 1:
        features, outputs = rest.split(b"\n", 1)
        return DecodedEntry(
            dep, name, version, created, ids, latency, keys, role, features, outputs,
            source=source, challenger=challenger,
        )  # fmt: skip
    if form == _VERSION:
        features, outputs = rest.split(b"\n", 1)
        return DecodedEntry(
            dep, name, version, created, ids, latency, keys, role,
            None, orjson.loads(outputs), features, source=source, challenger=challenger,
        )  # fmt: skip
    features, outputs, block = rest.split(b"\n", 2)
    numeric = tuple(doc[9])
    numbers = np.frombuffer(block, dtype=_FLOAT)
    if numbers.size != len(ids) * len(numeric):
        raise ValueError(
            f"a log entry's number block holds {numbers.size} values for {len(ids)} rows of "
            f"{len(numeric)} columns"
        )
    numbers = numbers.reshape(len(ids), len(numeric))
    if form == _VERSION_DERIVED:  # the features are the block's columns: made here
        features = orjson.dumps(_block_columns(numeric, numbers))
    return DecodedEntry(
        dep, name, version, created, ids, latency, keys, role,
        None, orjson.loads(outputs), features, numeric, numbers, source, challenger,
    )  # fmt: skip


def _header(head: bytes) -> list[Any]:
    """An entry's header line, parsed and checked: format 1 (9 fields) or 2 and 3 (10, its
    number columns' names last, several rows), each with a batch run's source (text) after
    them or not, and then a fallback's challenger (text; its source then text or null) or
    not. Raises ValueError on anything else (a later version's entry, a damaged one)."""
    doc = orjson.loads(head)
    form = doc[0] if type(doc) is list and doc else None
    size = _HEAD.get(form) if type(form) is int else None
    if not (
        size is not None
        and (
            len(doc) == size
            or (len(doc) == size + 1 and type(doc[size]) is str)
            or (
                len(doc) == size + 2
                and (doc[size] is None or type(doc[size]) is str)
                and type(doc[size + 1]) is str
            )
        )
        and (form == _VERSION or (_names(doc[9]) and type(doc[5]) is list and len(doc[5]) > 1))
    ):
        raise ValueError(f"not a prediction log entry of a known format: {head[:200]!r}")
    return doc


def _names(value: Any) -> bool:
    return type(value) is list and all(type(v) is str for v in value)


def unstored(entries: list[DecodedEntry], stored: Callable[[list[str]], set[str]]) -> list[int]:
    """The positions of the `entries` none of whose rows `stored(ids)` finds already: what a
    spool replay profiles. A dead process's segment also holds entries it stored (and, but
    for those of its last `RELEVO_PROFILE_FLUSH_S` seconds, whose profiles it had not yet
    written, profiled) before it died; profiling them again would count them twice. An entry
    goes into the store whole (one transaction), so it is all or none."""
    found = stored([pid for e in entries for pid in e.ids])
    return [k for k, e in enumerate(entries) if not found.intersection(e.ids)]


def columns_of(entry: DecodedEntry) -> dict[str, list[Any]]:
    """The features of an entry of several rows, column by column (parsed here)."""
    assert entry.features_json is not None
    columns: dict[str, list[Any]] = orjson.loads(entry.features_json)
    return columns


def entry_rows(payload: bytes) -> list[Row]:
    """The store rows of one serialised entry."""
    return rows_of([decode(payload)])


def rows_of(entries: Iterable[DecodedEntry], shared: bool = False) -> list[Row]:
    """The store rows of decoded entries: one JSON object per row for its output, made here
    (where the log is written), never on the request path. Features: one JSON object per
    row too; or, `shared`, a multi-row entry's features stored once as they were serialised,
    each row pointing at its place in them (`relevo.store.predictions.Inputs`): what the
    log's writer process stores."""
    rows: list[Row] = []
    for entry in entries:
        rows.extend(_rows(entry, shared))
    return rows


def _rows(entry: DecodedEntry, shared: bool) -> list[Row]:
    dep, name, version, role = entry.deployment, entry.model_name, entry.model_version, entry.role
    source, challenger = entry.source, entry.challenger
    when = datetime.fromtimestamp(entry.created_at, UTC)
    ids, latency, keys, n = entry.ids, entry.latency_ms, entry.keys, entry.n
    inputs: Inputs | None = None
    if entry.features is not None:  # one row: the objects are stored as they came
        assert isinstance(entry.outputs, bytes)
        feats = [entry.features.decode()]
        outs = [entry.outputs.decode()]
    else:
        assert entry.features_json is not None and not isinstance(entry.outputs, bytes)
        dumps = orjson.dumps
        if entry.features_json == b"{}":
            feats = ["{}"] * n
        elif shared:
            inputs = Inputs(ids[0], dep, when, entry.features_json.decode())
            feats = [""] * n
        else:
            columns = columns_of(entry)
            names = list(columns)
            feats = [
                dumps(dict(zip(names, vals, strict=True))).decode()
                for vals in zip(*columns.values(), strict=True)
            ]
        outs = [dumps(o).decode() for o in entry.outputs]
    keys = [None if k is None else str(k) for k in keys] if keys is not None else [None] * n
    lats = latency if type(latency) is list else [latency] * n  # one per row: a micro-batch
    marked = source is not None or challenger is not None
    if shared or marked:  # each row with its place in its entry's inputs (or none)
        places = range(n) if inputs is not None else [None] * n
        rows = [
            (pid, dep, name, version, when, key, f, o, lat, role, inputs, at)
            for pid, key, f, o, lat, at in zip(ids, keys, feats, outs, lats, places, strict=True)
        ]
        # a batch run's and a fallback's rows are marked (STORED's last columns); a request's
        # stay as they were
        return [(*r, source, challenger) for r in rows] if marked else rows
    return [
        (pid, dep, name, version, when, key, f, o, lat, role)
        for pid, key, f, o, lat in zip(ids, keys, feats, outs, lats, strict=True)
    ]


def _text_big_ints(value: Any) -> Any:
    if type(value) is int and not -(2**63) <= value < 2**64:
        return str(value)
    if isinstance(value, dict):
        return {k: _text_big_ints(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_text_big_ints(v) for v in value]
    return value
