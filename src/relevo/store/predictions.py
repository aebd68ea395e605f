"""The prediction log in the store: bulk inserts, counts and ordered reads for export.

A row carries its features inline (a JSON object, `features`), or, when the log's writer
process stored a multi-row entry (a micro-batch of requests, a chunk of batch scoring), as a
place in the entry's features stored once, column by column, in `prediction_inputs`: the row's
`inputs` names the entry, `inputs_row` its place, and its `features` text is empty. Reads give
every row its features inline either way (`inline_features`). A batch run's rows are marked
(`source` "batch", `BATCH`): their latency is no request's. A `fallback` row (the champion
answered a row its challenger failed on) names that challenger (`challenger`, "name:version"):
the gates charge it to that challenger alone, not to one deployed after it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine

from relevo.errors import IntegrityError
from relevo.store.bulk import BulkInsert
from relevo.store.tables import prediction_inputs, predictions

COLUMNS = (
    "id",
    "deployment",
    "model_name",
    "model_version",
    "created_at",
    "routing_key",
    "features",
    "output",
    "latency_ms",
    "role",
)
#: the stored columns: COLUMNS, then where a row's features are kept once for its entry, then
#: where the row was answered when not by a request (`BATCH`; None: a request), then, on a
#: `fallback` row, the challenger that failed on it ("name:version"; None on other rows)
STORED = (*COLUMNS, "inputs", "inputs_row", "source", "challenger")
#: a row's fields with its features inline (what a dead letter keeps)
FIELDS = (*COLUMNS, "source", "challenger")
_INPUTS = STORED.index("inputs")
_SOURCE = STORED.index("source")
_MARKS = len(STORED) - _SOURCE
_NO_MARKS = (None,) * _MARKS
_FEATURES = COLUMNS.index("features")

#: the `source` of a batch run's rows (`relevo predict`): their latency_ms is their chunk's
#: model call, no request's, so request latency statistics leave them out (they still count
#: as rows, and a failing challenger's as its errors)
BATCH = "batch"

#: one stored row, values in COLUMNS order (features and output as JSON text), optionally
#: followed by its entry's `Inputs` and its place in them (then its features text is empty),
#: and then by its source and its challenger (the second may be left off)
Row = tuple[Any, ...]

#: a request's row as stored (no source, no challenger): a batch of them is inserted without
#: those columns, as before they existed; a row in COLUMNS order is completed with no entry's
#: inputs
_UNMARKED = STORED[:_SOURCE]
_INLINE = (None, None)
#: prediction_inputs keys per SELECT ... IN (...)
_KEYS_PER_QUERY = 500


class Inputs:
    """The features of one multi-row entry, column by column, shared by its rows: stored once
    in `prediction_inputs` under `key` (the entry's first prediction id)."""

    __slots__ = ("created_at", "deployment", "key", "text")

    def __init__(self, key: str, deployment: str, created_at: Any, text: str) -> None:
        self.key = key
        self.deployment = deployment
        self.created_at = created_at
        self.text = text

    def row(self, at: int) -> str:
        """Row `at`'s features as the JSON object an inline row keeps."""
        return row_features(orjson.loads(self.text), at)


def row_features(columns: dict[str, list[Any]], at: int) -> str:
    return orjson.dumps({name: values[at] for name, values in columns.items()}).decode()


def inline(row: Row) -> Row:
    """`row` in FIELDS order with its features inline (what a dead letter keeps)."""
    marks = (*row[_SOURCE:], *_NO_MARKS)[:_MARKS]  # (source, challenger), None if left off
    if len(row) > len(COLUMNS) and row[_INPUTS] is not None:
        features = row[_INPUTS].row(row[_INPUTS + 1])
        return (*row[:_FEATURES], features, *row[_FEATURES + 1 : len(COLUMNS)], *marks)
    return (*row[: len(COLUMNS)], *marks)


class PredictionRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # requests' rows without the source and challenger columns (as before they existed),
        # marked rows (a batch run's, a fallback's) with them
        self._insert, self._insert_marked = (
            BulkInsert(engine, predictions, columns, key="id", time="created_at",
                       convert={"inputs": _keys})
            for columns in (_UNMARKED, STORED)
        )  # fmt: skip
        self._insert_inputs = BulkInsert(
            engine,
            prediction_inputs,
            ("id", "deployment", "created_at", "features"),
            key="id",
            time="created_at",
        )

    def insert_many(self, rows: Sequence[Row]) -> int:
        """Insert rows (tuples in COLUMNS order, created_at an aware datetime, optionally
        followed by their entry's `Inputs` and place, and then by their source and challenger:
        STORED, the challenger optional) in one transaction: PostgreSQL through COPY, SQLite
        through multi-row INSERTs (see `relevo.store.bulk`), the entries' inputs with them.
        Idempotent: rows (and inputs) whose id is already stored are skipped. Returns the
        rows handed in."""
        if not rows:
            return 0
        # requests' rows (most) are stored without the source and challenger columns; marked
        # rows with them
        unmarked, marked = len(_UNMARKED), len(STORED)
        plain = [r if len(r) == unmarked else r + _INLINE for r in rows if len(r) <= unmarked]
        with_source = (
            [r if len(r) == marked else r + (None,) * (marked - len(r)) for r in rows
             if len(r) > unmarked]
            if len(plain) < len(rows)
            else []
        )  # fmt: skip
        shared: dict[int, Inputs] = {}
        for part in (plain, with_source):
            for entry in (r[_INPUTS] for r in part):
                if entry is not None and id(entry) not in shared:
                    shared[id(entry)] = entry
        with self.engine.begin() as conn:  # one commit: each row with its entry's inputs
            self._insert_inputs.within(
                conn, [(e.key, e.deployment, e.created_at, e.text) for e in shared.values()]
            )
            self._insert.within(conn, plain)
            self._insert_marked.within(conn, with_source)
        return len(rows)

    def stored(self, ids: Sequence[str]) -> set[str]:
        """Which of `ids` are stored (a spool replay asks, to profile only what is new)."""
        found: set[str] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                query = select(predictions.c.id).where(predictions.c.id.in_(chunk))
                found.update(r[0] for r in conn.execute(query))
        return found

    def count(self, deployment: str | None = None) -> int:
        query = select(func.count()).select_from(predictions)
        if deployment is not None:
            query = query.where(predictions.c.deployment == deployment)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def ids(self, deployment: str) -> list[str]:
        """Every stored prediction id of `deployment` (for checks and tests)."""
        query = select(predictions.c.id).where(predictions.c.deployment == deployment)
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(query)]

    def iter_rows(
        self, deployment: str, chunk_size: int = 10_000
    ) -> Iterator[list[dict[str, Any]]]:
        """The deployment's logged predictions in id (= time) order, in chunks, each row with
        its features inline (FIELDS as keys: COLUMNS, then the row's source and challenger)."""
        last = ""
        cache: dict[str, dict[str, list[Any]]] = {}
        columns = [predictions.c[name] for name in STORED]
        while True:
            query = (
                select(*columns)
                .where(predictions.c.deployment == deployment, predictions.c.id > last)
                .order_by(predictions.c.id)
                .limit(chunk_size)
            )
            with self.engine.connect() as conn:
                rows = [dict(r) for r in conn.execute(query).mappings()]
                if not rows:
                    return
                texts = inline_features(
                    conn,
                    [r["features"] for r in rows],
                    [r.pop("inputs") for r in rows],
                    [r.pop("inputs_row") for r in rows],
                    cache,
                )
            for row, text in zip(rows, texts, strict=True):
                row["features"] = text
            yield rows
            last = rows[-1]["id"]


def inline_features(
    conn: Connection,
    features: Sequence[str],
    inputs: Sequence[str | None],
    at: Sequence[int | None],
    cache: dict[str, dict[str, list[Any]]] | None = None,
) -> list[str]:
    """Every row's features as a JSON object: its own text, or its place in its entry's
    inputs (each entry read and parsed once; `cache` keeps the entries of the last call, for
    an entry whose rows span two chunks)."""
    wanted = {k for k in inputs if k is not None}
    if not wanted:
        return list(features)
    known = cache if cache is not None else {}
    for key in list(known):
        if key not in wanted:
            del known[key]
    missing = iter(sorted(wanted - known.keys()))
    while keys := list(islice(missing, _KEYS_PER_QUERY)):
        query = select(prediction_inputs.c.id, prediction_inputs.c.features).where(
            prediction_inputs.c.id.in_(keys)
        )
        for found, doc in conn.execute(query):
            known[found] = orjson.loads(doc)
    out = []
    for text, ref, place in zip(features, inputs, at, strict=True):
        if ref is None:
            out.append(text)
            continue
        entry = known.get(ref)
        if entry is None or place is None:
            raise IntegrityError(
                f"the prediction log's features of entry {ref!r} are missing from "
                "prediction_inputs: the store was changed outside relevo"
            )
        out.append(row_features(entry, place))
    return out


def _keys(values: Sequence[Any]) -> list[Any]:
    """The inputs column as stored: each entry's key."""
    return [None if v is None else v.key for v in values]
