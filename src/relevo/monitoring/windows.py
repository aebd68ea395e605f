"""Windows: the merge of a deployment's bucket profiles over [since, until), from the store.

`load_window` reads the buckets of one model version (every replica, every role unless one is
asked for) and merges them in one vectorised pass: the buckets' packed blocks are stacked into
arrays, counts are summed, moments combined with Chan et al.'s formula over all buckets at
once, and one sample draw per numeric column gives a uniform sample of the window (a
multivariate hypergeometric split of the sample size over the buckets in proportion to their
counts, then the first values of each bucket's randomly ordered sample). Buckets are merged in
a canonical order, so the window is the same whatever order they are read or written in.

`volumes` gives rows answered per bucket and replica, for "no predictions" alerts.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from relevo.errors import IntegrityError
from relevo.monitoring.buckets import BucketProfile, check_payload
from relevo.monitoring.layout import ERROR, N_STATS, Layout, PartLayout
from relevo.monitoring.numeric import NumericProfile
from relevo.monitoring.profile import DatasetProfile
from relevo.monitoring.quality import QualityProfile
from relevo.monitoring.reference import ReferenceProfile

if TYPE_CHECKING:
    from relevo.store import Store
    from relevo.store.profiles import ProfileRow

#: raw values per numeric column a window's sample holds at most
WINDOW_SAMPLE = 1000
SHADOW = "shadow"


@dataclass(frozen=True)
class Window:
    """The merged profiles of one model version of a deployment over [since, until)."""

    deployment: str
    since: datetime
    until: datetime
    model_name: str
    model_version: int
    rows: int
    #: bucket rows merged (one per bucket, role and replica)
    buckets: int
    inputs: DatasetProfile
    prediction: DatasetProfile
    quality: QualityProfile
    multivariate: NumericProfile | None
    #: the model version's reference profile (what the window is profiled against)
    reference: ReferenceProfile = field(compare=False, repr=False)

    @property
    def model(self) -> str:
        return f"{self.model_name}:{self.model_version}"


@dataclass(frozen=True)
class _Part:
    n: int
    f: np.ndarray  # columns x (N_STATS + sample)
    ints: np.ndarray


def merge_parts(
    layout: PartLayout,
    parts: Sequence[_Part],
    sample_size: int,
    seed: int,
) -> DatasetProfile:
    """One `DatasetProfile` from the packed parts of many buckets (vectorised)."""
    n_rows = sum(p.n for p in parts)
    ints = np.sum([p.ints for p in parts], axis=0) if parts else np.zeros(layout.int_size, np.int64)
    n_num = len(layout.numeric)
    if not parts or n_num == 0:
        empty = np.full((n_num, N_STATS), np.nan)
        empty[:, :4] = 0
        return layout.profile(n_rows, empty, [np.empty(0)] * n_num, ints, seed, sample_size)
    width = max(p.f.shape[1] for p in parts)
    f = np.full((len(parts), n_num, width), np.nan)
    for b, p in enumerate(parts):
        f[b, :, : p.f.shape[1]] = p.f
    count = f[:, :, 0]
    total = count.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        means = np.where(count > 0, f[:, :, 4], 0.0)
        mean = np.where(total > 0, (count * means).sum(axis=0) / total, np.nan)
        dev = np.where(count > 0, means - mean, 0.0)
        m2 = np.where(count > 0, f[:, :, 5], 0.0).sum(axis=0) + (count * dev * dev).sum(axis=0)
        lo = np.where(count > 0, f[:, :, 6], np.inf).min(axis=0)
        hi = np.where(count > 0, f[:, :, 7], -np.inf).max(axis=0)
    stats = np.empty((n_num, N_STATS))
    stats[:, 0] = total
    stats[:, 1:4] = f[:, :, 1:4].sum(axis=0)
    stats[:, 4] = mean
    stats[:, 5] = np.where(total > 0, m2, 0.0)
    stats[:, 6] = np.where(total > 0, lo, np.nan)
    stats[:, 7] = np.where(total > 0, hi, np.nan)
    samples = [_draw(count[:, j], f[:, j, N_STATS:], sample_size, seed, j) for j in range(n_num)]
    return layout.profile(n_rows, stats, samples, ints, seed, sample_size)


def _draw(counts: np.ndarray, samples: np.ndarray, k: int, seed: int, column: int) -> np.ndarray:
    """A uniform sample of up to `k` values of the union of the buckets' populations, from
    their samples (random order, NaN-padded): the sample size is split over the buckets in
    proportion to their counts (multivariate hypergeometric) and each gives its first values.

    The size is capped so that no bucket is expected to give more than its sample holds."""
    n = counts.astype(np.int64)
    total = int(n.sum())
    if total == 0:
        return np.empty(0)
    held = np.isfinite(samples).sum(axis=1)
    live = n > 0
    cap = int(np.floor(np.min(held[live] * total / n[live])))
    k = min(k, total, cap)
    rng = np.random.default_rng(np.random.SeedSequence([seed, column, total, n.size]))
    take = rng.multivariate_hypergeometric(n, k) if n.size > 1 else np.array([k])
    take = np.minimum(take, held)
    chosen = samples[np.arange(samples.shape[1])[None, :] < take[:, None]]
    return rng.permutation(chosen)


def _part(layout: PartLayout, d: Any) -> _Part:
    n, f, ints = layout.blocks(d)
    return _Part(n, f, ints)


class UnreadableBucket(ValueError):
    """A stored bucket payload that cannot be decoded: `index` is its position among the
    payloads merged, `reason` what was wrong."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


def _fault(index: int, exc: Exception, part: str | None = None) -> UnreadableBucket:
    """A decoding error of payload `index` (of its `part`), as `UnreadableBucket`."""
    what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
    what = what or type(exc).__name__
    return UnreadableBucket(index, f"its {part} part: {what}" if part else what)


#: what a spoilt payload raises while it is decoded
_DECODING = (ValueError, KeyError, TypeError, AttributeError)


def _parts(
    layout: PartLayout, payloads: Sequence[dict[str, Any]], key: str, optional: bool = False
) -> list[_Part]:
    parts = []
    i = 0
    try:  # one try for the loop: which bucket failed is asked only when one does
        for i, d in enumerate(payloads):  # noqa: B007 - `i` names the failing bucket
            if optional and d.get(key) is None:
                continue
            parts.append(_part(layout, d[key]))
    except _DECODING as exc:
        raise _fault(i, exc, key if key in payloads[i] else None) from exc
    return parts


def _qualities(payloads: Sequence[dict[str, Any]]) -> list[QualityProfile]:
    out = []
    i = 0
    try:
        for i, d in enumerate(payloads):  # noqa: B007 - `i` names the failing bucket
            if d.get("quality"):
                out.append(QualityProfile.from_dict(d["quality"]))
    except _DECODING as exc:
        raise _fault(i, exc) from exc
    return out


def _rows_of(payloads: Sequence[dict[str, Any]], layout: Layout) -> int:
    """The payloads' rows in all, each checked to be a bucket of `layout`."""
    rows = 0
    i = 0
    try:
        for i, d in enumerate(payloads):  # noqa: B007 - `i` names the failing bucket
            check_payload(d, layout)
            rows += int(d["rows"])
    except _DECODING as exc:
        raise _fault(i, exc) from exc
    return rows


def merge_payloads(
    payloads: Sequence[dict[str, Any]],
    layout: Layout,
    sample_size: int,
    seed: int = 0,
) -> tuple[int, DatasetProfile, DatasetProfile, QualityProfile, NumericProfile | None]:
    """(rows, inputs, prediction, quality, multivariate) of bucket payloads (`to_dict`) on
    `layout`, in the given order (callers sort them canonically)."""
    rows = _rows_of(payloads, layout)
    inputs = merge_parts(layout.inputs, _parts(layout.inputs, payloads, "inputs"),
                         sample_size, seed)  # fmt: skip
    prediction = merge_parts(
        layout.prediction, _parts(layout.prediction, payloads, "prediction"), sample_size, seed
    )
    quality = QualityProfile.merge_many(_qualities(payloads))
    mv = None
    if layout.multivariate is not None:
        parts = _parts(layout.multivariate, payloads, "multivariate", optional=True)
        col = merge_parts(layout.multivariate, parts, sample_size, seed).columns[ERROR]
        assert isinstance(col, NumericProfile)
        mv = col
    return rows, inputs, prediction, quality, mv


def _canonical(d: dict[str, Any]) -> tuple[Any, ...]:
    digest = hashlib.blake2b(
        (d["inputs"]["f"] + d["inputs"]["i"] + d["prediction"]["f"]).encode(), digest_size=8
    ).digest()
    return (d["start"], d["role"], d["rows"], d["seed"], digest)


def merge_buckets(
    buckets: Sequence[BucketProfile], sample_size: int | None = None
) -> BucketProfile:
    """The bucket of all `buckets`' rows (same model version; the first's key), the same
    whatever their order."""
    from dataclasses import replace

    if not buckets:
        raise ValueError("nothing to merge")
    first = buckets[0]
    if any(b.model_name != first.model_name or b.model_version != first.model_version
           for b in buckets):  # fmt: skip
        raise ValueError("buckets of different model versions do not merge")
    payloads = sorted((b.to_dict() for b in buckets), key=_canonical)
    seed = int(payloads[0]["seed"])
    k = sample_size or max(
        (c.sample_size for c in first.inputs.columns.values() if isinstance(c, NumericProfile)),
        default=1,
    )
    rows, inputs, prediction, quality, mv = merge_payloads(payloads, first.layout, k, seed)
    return replace(
        first,
        rows=rows,
        inputs=inputs,
        prediction=prediction,
        quality=quality,
        multivariate=mv,
        seed=seed,
    )


# --------------------------------------------------------------------------- the store


def load_window(
    store: Store,
    deployment: str,
    since: datetime,
    until: datetime,
    *,
    model: tuple[str, int] | None = None,
    among: Collection[tuple[str, int]] | None = None,
    role: str | None = None,
    sample_size: int = WINDOW_SAMPLE,
) -> Window | None:
    """The merge of `deployment`'s buckets starting in [since, until) (None: no bucket).

    `model`: the (name, version) to profile; default: the version that answered the most
    rows in the window (shadow rows aside), of those `among` when given. `role`: only
    buckets of that role ("champion", "challenger", "fallback", "shadow"); default: every
    role of that model."""
    if model is None:
        counts = store.profiles.models(deployment, since, until)
        if among is not None:
            counts = {(m, r): n for (m, r), n in counts.items() if m in among}
        answered = {m: n for (m, r), n in counts.items() if r != SHADOW} or {
            m: n for (m, _r), n in counts.items()
        }
        if not answered:
            return None
        model = max(answered, key=lambda m: (answered[m], m[1]))
    rows = store.profiles.fetch(deployment, since, until, model=model, role=role)
    if not rows:
        return None
    reference = _reference(store, model)
    if reference is None:
        return None
    layout = reference.layout
    kept: list[ProfileRow] = []
    payloads = []
    for r in rows:  # already in canonical (SQL) order
        try:
            d = orjson.loads(r.payload)
        except orjson.JSONDecodeError as exc:
            raise _unreadable(r, f"not JSON ({exc})") from exc
        if not isinstance(d, dict):
            raise _unreadable(r, "not a JSON object")
        if d.get("layout") == layout.digest:
            kept.append(r)
            payloads.append(d)
    if not payloads:
        return None
    try:
        n, inputs, prediction, quality, mv = merge_payloads(payloads, layout, sample_size)
    except UnreadableBucket as exc:
        raise _unreadable(kept[exc.index], exc.reason) from exc
    return Window(
        deployment,
        since,
        until,
        model[0],
        model[1],
        n,
        len(payloads),
        inputs,
        prediction,
        quality,
        mv,
        reference,
    )


def _unreadable(row: ProfileRow, reason: str) -> IntegrityError:
    """The error that names a stored bucket that cannot be read, and what to do."""
    return IntegrityError(
        f"the profile bucket of deployment {row.deployment!r} starting "
        f"{row.start:%Y-%m-%d %H:%M:%S} UTC (model {row.model_name}:{row.model_version}, "
        f"role {row.role}, replica {row.replica!r}) cannot be read: {reason}. The store's "
        f"profile_buckets table holds it; delete that row to monitor the window without it"
    )


#: reference profiles read (they never change once registered), per store and version
_REFERENCES: weakref.WeakKeyDictionary[Any, dict[tuple[str, int], ReferenceProfile]] = (
    weakref.WeakKeyDictionary()
)


def _reference(store: Store, model: tuple[str, int]) -> ReferenceProfile | None:
    try:
        known = _REFERENCES.setdefault(store, {})
    except TypeError:  # a store that cannot be weakly referenced: no cache
        known = {}
    found = known.get(model)
    if found is None:
        text = store.models.profile(model[0], model[1])
        if text is None:
            return None
        found = ReferenceProfile.from_dict(orjson.loads(text))
        if len(known) >= 32:
            known.pop(next(iter(known)))
        known[model] = found
    return found


def volumes(
    store: Store, deployment: str, since: datetime, until: datetime
) -> list[tuple[datetime, str, int]]:
    """(bucket start, replica, rows answered) of `deployment` in [since, until), by start
    then replica; shadow rows (a second opinion, not an answer) are left out."""
    return store.profiles.volumes(deployment, since, until)
