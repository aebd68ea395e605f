"""Production profiles built in the prediction log's writer thread, off the hot path.

After each batch the log stores, `ProfileBuilder.flushed` gets that batch's entries as the
writer decoded them to store them (`relevo.serving.entries.decode`: no second parse), groups
them by (deployment, model version, role, time bucket) and turns each group into columns at
once (one array per column, so that no Python object per row is kept meanwhile); about once a
second, each group's columns are added to its in-memory `BucketProfile`. Every
`RELEVO_PROFILE_FLUSH_S` seconds, and at a graceful close, the buckets are merged into this
replica's rows of `profile_buckets`.

The hot path hands over only what the log does not carry, through `QualityTally` (a lock and
a dict update, paid by failing requests and rows with unused columns alone): rows rejected by
validation with their reasons, rows the model failed on, columns sent that the model does not
use. Shadow outputs arrive through `shadow`. A failure to profile is logged and counted
(`errors`); it never blocks or loses a prediction.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
import zlib
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from itertools import chain
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import orjson
import pandas as pd

from relevo.errors import InvalidInputError
from relevo.monitoring.buckets import BucketProfile
from relevo.monitoring.layout import PartLayout
from relevo.monitoring.quality import QualityProfile
from relevo.monitoring.reference import ReferenceProfile
from relevo.serving.entries import DecodedEntry, columns_of
from relevo.store.profiles import ProfileRow

if TYPE_CHECKING:
    from relevo.store import Store

log = logging.getLogger(__name__)

#: stored entries are profiled together at most this often, or once this many are waiting
PROFILE_EVERY_S = 1.0
PROFILE_ENTRIES = 20_000
#: rows handed over by the predictor: deployment, model name, version, role, time, numeric
#: column names, their values (rows x columns), the other columns, the outputs
Handed = tuple[
    str, str, int, str, float, tuple[str, ...], np.ndarray, Mapping[str, Any],
    Sequence[Mapping[str, Any]],
]  # fmt: skip
#: (deployment, model name, model version, role, bucket start as Unix seconds)
Key = tuple[str, str, int, str, int]


class Part(NamedTuple):
    """Rows of one group made ready to profile: the profiled columns as arrays (`_columns`),
    the rows, their scores."""

    columns: dict[str, np.ndarray]
    n: int
    scores: list[Any]


_BUILDERS = itertools.count(1)


def replica_id() -> str:
    """This process's replica name: host and process id (stable while the process lives); a
    second server in one process (tests, notebooks) gets a suffix, so that each writes rows
    of its own."""
    n = next(_BUILDERS)
    suffix = "" if n == 1 else f"-{n}"
    return f"{socket.gethostname()}-{os.getpid()}{suffix}"[-200:]


_REASONS = (
    ("required column is missing", "missing_column"),
    ("expected an object", "not_an_object"),
    ("null is not allowed", "null"),
    ("not a finite number", "not_finite"),
    ("outside the reference range", "out_of_range"),
    ("never seen in the reference", "unseen_category"),
    ("routing key", "invalid_key"),
    ("expected a list", "not_a_list"),
    ("empty list", "empty"),
    ("expected", "wrong_type"),
)


def reason_of(message: str) -> str:
    """A validation problem's reason, as a short stable name."""
    for fragment, reason in _REASONS:
        if fragment in message:
            return reason
    return "invalid"


class QualityTally:
    """Quality counts handed over by the hot path, drained by the writer thread."""

    def __init__(self, bucket_s: int) -> None:
        self.bucket_s = bucket_s
        self._lock = threading.Lock()
        self._items: dict[Key, QualityProfile] = {}

    def _add(self, key: tuple[str, str, int, str], q: QualityProfile) -> None:
        start = int(time.time() // self.bucket_s * self.bucket_s)
        full = (*key, start)
        with self._lock:
            old = self._items.get(full)
            self._items[full] = q if old is None else old.merge(q)

    def rejected(self, deployment: str, model: tuple[str, int], rows: Any, exc: Exception) -> None:
        """A request refused by validation: its rows, counted by the reasons of its problems."""
        n = len(rows) if isinstance(rows, list) else 1
        reasons: Counter[str] = Counter()
        if isinstance(exc, InvalidInputError):
            per: dict[str, set[int | None]] = defaultdict(set)
            for p in exc.problems:
                per[reason_of(p.message)].add(p.row)
            for reason, where in per.items():
                reasons[reason] = n if None in where else len(where)
        else:
            reasons["invalid"] = n
        self._add(
            (deployment, *model, "champion"), QualityProfile(rejected=n, reasons=dict(reasons))
        )

    def failed(self, deployment: str, model: tuple[str, int], role: str, n: int) -> None:
        """Rows a model failed on."""
        self._add((deployment, *model, role), QualityProfile(failed=n))

    def unused(
        self, deployment: str, model: tuple[str, int], rows: Sequence[Mapping[str, Any]],
        known: frozenset[str],
    ) -> None:  # fmt: skip
        """Count the columns of `rows` the model does not use (only called when some row
        has more keys than the model's columns)."""
        counts = Counter(k for r in rows for k in r if k not in known)
        if counts:
            q = QualityProfile(unused={str(k): v for k, v in sorted(counts.items())})
            self._add((deployment, *model, "champion"), q)

    def merge_in(self, key: Key, q: QualityProfile) -> None:
        """Counts another process's tally holds for the bucket of `key`."""
        with self._lock:
            old = self._items.get(key)
            self._items[key] = q if old is None else old.merge(q)

    def drain(self) -> dict[Key, QualityProfile]:
        with self._lock:
            items, self._items = self._items, {}
        return items


class ProfileBuilder:
    """In-memory bucket profiles of this replica, persisted to the store now and then."""

    def __init__(
        self,
        store: Store,
        *,
        bucket_s: int = 60,
        flush_s: float = 10.0,
        replica: str | None = None,
        on_error: Any = None,
    ) -> None:
        self.store = store
        self.bucket_s = int(bucket_s)
        self.flush_s = flush_s
        self.replica = replica or replica_id()
        self.tally = QualityTally(self.bucket_s)
        self._buckets: dict[Key, BucketProfile] = {}
        self._references: dict[tuple[str, int], ReferenceProfile | None] = {}
        self._shadow_lock = threading.Lock()
        self._shadow: list[tuple[str, str, int, float, list[dict[str, Any]]]] = []
        #: rows the predictor hands over as it logs them (its validated columns: no JSON to
        #: parse again); when set, `flushed` leaves the log's entries alone
        self.direct = False
        self._handed: deque[Handed] = deque()
        self._persisted_at = time.monotonic()
        #: stored rows not profiled yet, per group: the one-row entries' parts, then the
        #: others' (the order `_columns` gives, whatever the batches)
        self._pending: dict[Key, tuple[list[Part], list[Part]]] = {}
        self._pending_entries = 0
        self._profiled_at = time.monotonic()
        self._on_error = on_error
        #: the writer thread profiles and persists; a spool replay may profile meanwhile
        self._lock = threading.RLock()
        self.errors = 0
        self.rows_profiled = 0

    # ---- hand-offs

    def shadow(
        self, deployment: str, model: tuple[str, int], outputs: list[dict[str, Any]]
    ) -> None:
        """A shadow model's outputs on mirrored rows (profiled as role "shadow")."""
        with self._shadow_lock:
            self._shadow.append((deployment, model[0], model[1], time.time(), outputs))

    def hand(
        self,
        deployment: str,
        model: tuple[str, int],
        role: str,
        created: float,
        numeric: tuple[str, ...],
        numbers: np.ndarray,
        others: Mapping[str, Any],
        outputs: Sequence[Mapping[str, Any]],
    ) -> None:
        """Rows just answered and logged, as the predictor validated them (the numeric
        columns as one matrix, the others as lists): profiled in the writer thread."""
        self._handed.append(
            (deployment, model[0], model[1], role, created, numeric, numbers, others, outputs)
        )

    def side(self) -> bytes | None:
        """The quality counts and shadow outputs handed over since the last call, serialised
        for the writer process that profiles this server's rows (None: nothing new)."""
        tally = self.tally.drain()
        with self._shadow_lock:
            shadows, self._shadow = self._shadow, []
        if not tally and not shadows:
            return None
        doc = {"tally": [[list(k), q.to_dict()] for k, q in tally.items()], "shadow": shadows}
        return orjson.dumps(doc, default=str, option=orjson.OPT_SERIALIZE_NUMPY)

    def take_side(self, data: bytes) -> None:
        """Fold in what `side` of the serving process sent."""
        doc = orjson.loads(data)
        for key, q in doc["tally"]:
            self.tally.merge_in(tuple(key), QualityProfile.from_dict(q))
        with self._shadow_lock:
            self._shadow.extend(tuple(item) for item in doc["shadow"])

    # ---- the writer thread

    def flushed(self, entries: Iterable[DecodedEntry]) -> None:
        """Take the entries the log just stored: they are profiled together about once a
        second (`PROFILE_EVERY_S`), since a profile update costs the same for 50 rows as for
        5,000; never raises."""
        self._take(() if self.direct else entries)

    def replayed(self, entries: Iterable[DecodedEntry]) -> None:
        """Take stored entries to profile from what they logged (a spool replay); never
        raises."""
        self._take(entries)

    def _take(self, entries: Iterable[DecodedEntry]) -> None:
        try:
            parts = self._parts(entries)
            with self._lock:
                for key, single, other, count in parts:
                    singles, others = self._pending.setdefault(key, ([], []))
                    if single is not None:
                        singles.append(single)
                    if other is not None:
                        others.append(other)
                    self._pending_entries += count
                if (
                    self._pending_entries >= PROFILE_ENTRIES
                    or time.monotonic() - self._profiled_at >= PROFILE_EVERY_S
                ):
                    self._profile_pending()
        except Exception:
            self._error("profiling logged predictions failed")

    def _parts(
        self, entries: Iterable[DecodedEntry]
    ) -> list[tuple[Key, Part | None, Part | None, int]]:
        """Per group of `entries`: its one-row entries' part, its other entries' part, the
        number of entries (a group whose model has no reference is not profiled)."""
        groups: dict[Key, tuple[list[DecodedEntry], list[DecodedEntry]]] = {}
        size = self.bucket_s
        for e in entries:
            start = int(e.created_at // size * size)
            key = (e.deployment, e.model_name, e.model_version, e.role, start)
            singles, others = groups.setdefault(key, ([], []))
            (singles if e.features is not None else others).append(e)
        out = []
        for key, (singles, others) in groups.items():
            ref = self.reference(key[1], key[2])
            if ref is None:
                continue
            layout = ref.layout.inputs
            out.append(
                (
                    key,
                    Part(*_columns(singles, layout)) if singles else None,
                    Part(*_columns(others, layout)) if others else None,
                    len(singles) + len(others),
                )
            )
        return out

    def _profile_pending(self) -> None:
        pending, self._pending = self._pending, {}
        self._pending_entries = 0
        self._profiled_at = time.monotonic()
        for key, (singles, others) in pending.items():
            bucket = self._bucket(key)
            if bucket is None:
                continue
            ref = self.reference(key[1], key[2])
            assert ref is not None
            columns, n, scores = _joined(singles + others, bucket.layout.inputs)
            self._buckets[key] = bucket.update(columns, scores, ref)
            self.rows_profiled += n
        if self._handed:
            self._profile_handed()

    def _profile_handed(self) -> None:
        groups: dict[Key, list[Handed]] = defaultdict(list)
        size = self.bucket_s
        handed = self._handed
        for _ in range(len(handed)):
            item = handed.popleft()
            groups[(item[0], item[1], item[2], item[3], int(item[4] // size * size))].append(item)
        for key, items in groups.items():
            bucket = self._bucket(key)
            if bucket is None:
                continue
            ref = self.reference(key[1], key[2])
            assert ref is not None
            layout = bucket.layout.inputs
            # one concatenation per group: the numbers of every request stacked at once
            numbers = np.concatenate([it[6] for it in items]) if len(items) > 1 else items[0][6]
            names = items[0][5]
            columns: dict[str, Any] = {
                name: numbers[:, j] for j, name in enumerate(names) if name in layout.numeric
            }
            for name in layout.categorical:
                if all(name in it[7] for it in items):
                    values = np.empty(len(numbers), dtype=object)
                    values[:] = list(chain.from_iterable(it[7][name] for it in items))
                    columns[name] = values
            scores = [s for it in items for s in scores_of(it[8])]
            self._buckets[key] = bucket.update(columns, scores, ref)
            self.rows_profiled += len(scores)

    def tick(self, force: bool = False) -> None:
        """Persist the buckets when it is time (or `force`); never raises."""
        now = time.monotonic()
        if not force and now - self._persisted_at < self.flush_s:
            return
        self._persisted_at = now
        try:
            with self._lock:
                self._profile_pending()
                self._drain_side()
                self.persist()
        except Exception:
            self._error("storing production profiles failed; keeping them for the next try")

    def close(self) -> None:
        """Persist everything (a graceful stop)."""
        self.tick(force=True)

    def _error(self, message: str) -> None:
        self.errors += 1
        log.exception(message)
        if self._on_error is not None:
            try:
                self._on_error()
            except Exception:
                log.debug("profile error callback failed", exc_info=True)

    def reference(self, name: str, version: int) -> ReferenceProfile | None:
        key = (name, version)
        if key not in self._references:
            text = self.store.models.profile(name, version)
            self._references[key] = (
                ReferenceProfile.from_dict(orjson.loads(text)) if text is not None else None
            )
        return self._references[key]

    def _bucket(self, key: Key) -> BucketProfile | None:
        found = self._buckets.get(key)
        if found is not None:
            return found
        dep, name, version, role, start = key
        ref = self.reference(name, version)
        if ref is None:
            return None
        seed = zlib.crc32(f"{self.replica}/{role}/{start}".encode())
        when = datetime.fromtimestamp(start, UTC)
        bucket = BucketProfile.empty(ref, dep, name, version, role, when, self.bucket_s, seed)
        self._buckets[key] = bucket
        return bucket

    def _drain_side(self) -> None:
        """Fold the hot path's quality counts and the shadow outputs into the buckets."""
        for key, q in self.tally.drain().items():
            bucket = self._bucket(key)
            if bucket is not None:
                self._buckets[key] = bucket.with_quality(q)
        with self._shadow_lock:
            shadows, self._shadow = self._shadow, []
        for dep, name, version, created, outputs in shadows:
            key = (dep, name, version, "shadow", int(created // self.bucket_s * self.bucket_s))
            bucket = self._bucket(key)
            if bucket is None:
                continue
            ref = self.reference(name, version)
            assert ref is not None
            self._buckets[key] = bucket.update(
                pd.DataFrame(index=range(len(outputs))), scores_of(outputs), ref, inputs=False
            )

    def persist(self) -> int:
        """Merge the in-memory buckets into this replica's stored rows; returns rows written.
        On failure the buckets stay in memory for the next try."""
        if not self._buckets:
            return 0
        taken = dict(self._buckets)
        rows = []
        for key, bucket in taken.items():
            dep, name, version, role, _ = key
            stored = self.store.profiles.get(dep, name, version, role, bucket.start, self.replica)
            if stored is not None:
                old = BucketProfile.from_dict(orjson.loads(stored.payload), bucket.layout)
                bucket = bucket.merge(old)
            rows.append(
                ProfileRow(
                    dep, name, version, role, bucket.start, bucket.seconds, self.replica,
                    bucket.rows, orjson.dumps(bucket.to_dict()).decode(),
                )
            )  # fmt: skip
        self.store.profiles.upsert(rows)
        for key in taken:
            del self._buckets[key]
        return len(rows)


def scores_of(outputs: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The profiled number (or label) of each output: P(positive), the value, the label."""
    if not outputs:
        return []
    first = outputs[0]
    if "probability" in first:
        return [o.get("probability") for o in outputs]
    if "value" in first:
        return [o.get("value") for o in outputs]
    return [None if o.get("label") is None else str(o.get("label")) for o in outputs]


def _columns(
    entries: list[DecodedEntry], layout: PartLayout
) -> tuple[dict[str, np.ndarray], int, list[Any]]:
    """The profiled columns (and the scores) of a group's entries: numeric columns as float
    arrays (null -> NaN), categorical ones as object arrays, one array per column made from
    the entries' values end to end. The one-row entries come first, their features parsed
    together (the writer never parses them: it stores them as they came), then the others
    in order (`_others`), their outputs scored in one pass."""
    numeric, categorical = layout.numeric, layout.categorical
    names = (*numeric, *categorical)
    features: list[bytes] = []
    outputs: list[bytes] = []
    others: list[DecodedEntry] = []
    for e in entries:
        if e.features is not None:
            assert isinstance(e.outputs, bytes)
            features.append(e.features)
            outputs.append(e.outputs)
        else:
            others.append(e)
    #: (rows, column -> values) per piece, in row order
    pieces: list[tuple[int, Mapping[str, Sequence[Any] | np.ndarray]]] = []
    scores: list[Any] = []
    if features:
        rows = orjson.loads(b"[" + b",".join(features) + b"]")
        present = [name for name in names if any(name in r for r in rows)]
        pieces.append((len(rows), {name: [r.get(name) for r in rows] for name in present}))
        scores.extend(scores_of(orjson.loads(b"[" + b",".join(outputs) + b"]")))
    if others:
        pieces.extend(_others(others, numeric, categorical))
        outs: list[dict[str, Any]] = []
        for e in others:
            assert not isinstance(e.outputs, bytes)  # parsed: an entry of several rows
            outs.extend(e.outputs)
        scores.extend(scores_of(outs))
    out: dict[str, np.ndarray] = {}
    for name in names:
        if any(name in columns for _, columns in pieces):
            out[name] = _column(name in numeric, [(k, columns.get(name)) for k, columns in pieces])
    return out, sum(k for k, _ in pieces), scores


def _others(
    entries: list[DecodedEntry], numeric: tuple[str, ...], categorical: tuple[str, ...]
) -> list[tuple[int, Mapping[str, Sequence[Any] | np.ndarray]]]:
    """The pieces of a group's entries of several rows. When each carries the number block
    of the same columns and the profiled columns are all numeric and all in it (an
    all-numeric model), the blocks end to end: no JSON parsed. Otherwise their features
    parsed, one model's joined in C, column by column."""
    n = sum(e.n for e in entries)
    first = entries[0]
    at = {name: j for j, name in enumerate(first.numeric)}
    if (
        first.numbers is not None
        and not categorical
        and all(name in at for name in numeric)
        and all(e.numbers is not None and e.numeric == first.numeric for e in entries)
    ):
        blocks = [e.numbers for e in entries if e.numbers is not None]
        matrix = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
        return [(n, {name: matrix[:, at[name]] for name in numeric})]
    parsed = [columns_of(e) for e in entries]
    names_of = [tuple(columns) for columns in parsed]
    if names_of.count(names_of[0]) == len(names_of):  # one model's columns: end to end
        values = zip(*(columns.values() for columns in parsed), strict=True)
        joined = {
            name: list(chain.from_iterable(v)) for name, v in zip(names_of[0], values, strict=True)
        }
        return [(n, joined)]
    return [(e.n, columns) for e, columns in zip(entries, parsed, strict=True)]


def _joined(parts: list[Part], layout: PartLayout) -> tuple[dict[str, np.ndarray], int, list[Any]]:
    """The parts of one group end to end (a column some part lacks: missing there)."""
    if len(parts) == 1:
        return parts[0]
    out: dict[str, np.ndarray] = {}
    for name in (*layout.numeric, *layout.categorical):
        if any(name in p.columns for p in parts):
            numeric = name in layout.numeric
            out[name] = np.concatenate(
                [p.columns[name] if name in p.columns else _missing(numeric, p.n) for p in parts]
            )
    return out, sum(p.n for p in parts), list(chain.from_iterable(p.scores for p in parts))


def _column(
    numeric: bool, pieces: list[tuple[int, Sequence[Any] | np.ndarray | None]]
) -> np.ndarray:
    """One profiled column from its pieces' values (None: a piece without the column; an
    array: a number block's column)."""
    if all(isinstance(values, list) for _, values in pieces):
        parts = [values for _, values in pieces if values]
        joined = parts[0] if len(parts) == 1 else list(chain.from_iterable(parts))
        if not numeric:
            return _array(False, joined)
        try:  # converted value by value: the same floats as piece by piece
            return np.array(joined, dtype=np.float64)
        except (TypeError, ValueError):
            pass
    arrays = [
        _missing(numeric, k) if values is None else _array(numeric, values) for k, values in pieces
    ]
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _missing(numeric: bool, n: int) -> np.ndarray:
    return np.full(n, np.nan) if numeric else np.full(n, None, dtype=object)


def _array(numeric: bool, values: Sequence[Any] | np.ndarray) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype == np.float64:
        return values
    if numeric:
        try:
            return np.array(values, dtype=np.float64)
        except (TypeError, ValueError):  # nulls (or text the log kept): NaN
            return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
