"""The layout of production profiles: a model version's reference bins and categories, and the
compact binary-in-JSON form in which time buckets store their profiles on that layout.

A bucket's payload leaves out everything the reference already says (bin edges, category
names, column kinds): it keeps, per profiled table (`PartLayout`), two blocks packed as base64:

* `f`: float64, one line per numeric column: count, missing, below, above, mean, m2, min, max,
  then the bounded sample padded with NaN (a sample value is always finite);
* `i`: int64, the bin counts of every numeric column, then per categorical column its counts
  on the reference's categories (with "__other__" last: every value the reference never
  showed), then each categorical column's missing count.

So a window of 1,440 buckets is 1,440 small JSON documents whose blocks stack into NumPy
arrays, merged with a handful of vectorised operations (`relevo.monitoring.windows`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pybase64

from relevo.monitoring.numeric import NumericProfile
from relevo.monitoring.profile import OTHER_CATEGORY, CategoricalProfile, DatasetProfile

#: statistics per numeric column in a bucket's float block, before the sample
STATS = ("count", "missing", "below", "above", "mean", "m2", "min", "max")
N_STATS = len(STATS)


def pack(arr: np.ndarray) -> str:
    return pybase64.b64encode_as_string(np.ascontiguousarray(arr).tobytes())


def unpack(text: str, dtype: type) -> np.ndarray:
    # pybase64 (SIMD) decodes a day's 20 MB of blocks 22x faster than the standard library's
    # base64, which took a third of the window query (docs/performance.md)
    return np.frombuffer(pybase64.b64decode(text, validate=True), dtype=dtype)


@dataclass(frozen=True, eq=False)
class PartLayout:
    """The bins and categories of one profiled table (the inputs, the prediction, or the
    reconstruction error), in the reference's column order."""

    numeric: tuple[str, ...]
    edges: tuple[np.ndarray, ...]
    categorical: tuple[str, ...]
    #: per categorical column: the reference's categories, "__other__" last
    categories: tuple[tuple[str, ...], ...]
    max_categories: tuple[int, ...]
    order: tuple[str, ...]

    @classmethod
    def of(cls, reference: DatasetProfile) -> PartLayout:
        numeric, edges, categorical, categories, maxes = [], [], [], [], []
        for name, col in reference.columns.items():
            if isinstance(col, NumericProfile):
                numeric.append(name)
                edges.append(col.edges)
            else:
                cats = [c for c in col.counts if c != OTHER_CATEGORY]
                categorical.append(name)
                categories.append((*cats, OTHER_CATEGORY))
                maxes.append(col.max_categories)
        return cls(
            tuple(numeric),
            tuple(edges),
            tuple(categorical),
            tuple(categories),
            tuple(maxes),
            tuple(reference.columns),
        )

    @cached_property
    def bins(self) -> np.ndarray:
        return np.array([max(e.size - 1, 1) for e in self.edges], dtype=np.int64)

    @cached_property
    def bin_offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.bins)]).astype(np.int64)

    @cached_property
    def cat_offsets(self) -> np.ndarray:
        sizes = [len(c) for c in self.categories]
        start = int(self.bin_offsets[-1])
        return (start + np.concatenate([[0], np.cumsum(sizes)])).astype(np.int64)

    @cached_property
    def int_size(self) -> int:
        return int(self.cat_offsets[-1]) + len(self.categorical)

    @cached_property
    def seen(self) -> tuple[frozenset[str], ...]:
        """Per categorical column, the categories the reference showed by name."""
        return tuple(frozenset(c[:-1]) for c in self.categories)

    @cached_property
    def digest(self) -> str:
        """A short fingerprint: buckets are merged only on the same layout."""
        h = hashlib.sha256()
        for name, e in zip(self.numeric, self.edges, strict=True):
            h.update(name.encode() + b"\0" + e.tobytes())
        for name, cats in zip(self.categorical, self.categories, strict=True):
            h.update(name.encode() + b"\1" + "\0".join(cats).encode())
        return h.hexdigest()[:16]

    # ---- empty profiles on the layout

    def empty(self, sample_size: int, seed: int) -> DatasetProfile:
        cols: dict[str, NumericProfile | CategoricalProfile] = {}
        for name, e, k in zip(self.numeric, self.edges, self.bins.tolist(), strict=True):
            zeros = np.zeros(k, np.int64)
            cols[name] = NumericProfile(e, zeros, sample_size=sample_size, seed=seed)
        for name, m in zip(self.categorical, self.max_categories, strict=True):
            cols[name] = CategoricalProfile(max_categories=m)
        return DatasetProfile(0, {n: cols[n] for n in self.order})

    # ---- encoding

    def encode(self, profile: DatasetProfile, sample_size: int, seed: int) -> dict[str, Any]:
        """The compact form of a profile on this layout. Samples are stored in the order they
        are held, which buckets keep random (`shuffled`), so that the first m values of a
        stored sample are a uniform subsample of it."""
        f = np.full((len(self.numeric), N_STATS + sample_size), np.nan)
        ints = np.zeros(self.int_size, np.int64)
        for j, name in enumerate(self.numeric):
            col = profile.columns[name]
            assert isinstance(col, NumericProfile)
            f[j, :N_STATS] = (
                col.count, col.missing, col.below, col.above, col.mean, col.m2, col.min, col.max
            )  # fmt: skip
            sample = col.sample[:sample_size]
            f[j, N_STATS : N_STATS + sample.size] = sample
            ints[self.bin_offsets[j] : self.bin_offsets[j + 1]] = col.counts
        for j, name in enumerate(self.categorical):
            col = profile.columns[name]
            assert isinstance(col, CategoricalProfile)
            cats = self.categories[j]
            index = {c: i for i, c in enumerate(cats)}
            other = len(cats) - 1
            start = int(self.cat_offsets[j])
            for c, n in col.counts.items():
                ints[start + index.get(c, other)] += n
            ints[int(self.cat_offsets[-1]) + j] = col.missing
        return {"n": profile.n_rows, "s": sample_size, "f": pack(f), "i": pack(ints)}

    def blocks(self, d: Mapping[str, Any]) -> tuple[int, np.ndarray, np.ndarray]:
        """(rows, float block as columns x (stats + sample), int block) of an encoded part."""
        s = int(d["s"])
        try:
            f = unpack(d["f"], np.float64).reshape(len(self.numeric), N_STATS + s)
        except ValueError as exc:  # not base64, or not the layout's shape
            raise ValueError(f"its block of statistics and samples cannot be read ({exc})") from exc
        try:
            ints = unpack(d["i"], np.int64)
        except ValueError as exc:
            raise ValueError(f"its block of counts cannot be read ({exc})") from exc
        if ints.size != self.int_size:
            raise ValueError("the stored profile does not fit the reference's layout")
        return int(d["n"]), f, ints

    def profile(
        self,
        n_rows: int,
        stats: np.ndarray,
        samples: list[np.ndarray],
        ints: np.ndarray,
        seed: int,
        sample_size: int | None = None,
    ) -> DatasetProfile:
        """A `DatasetProfile` from (merged) blocks: `stats` columns x STATS, `samples` one array
        per numeric column, `ints` as in a bucket. `sample_size`: the samples' bound (default:
        what they hold)."""
        cols: dict[str, NumericProfile | CategoricalProfile] = {}
        for j, name in enumerate(self.numeric):
            count, missing, below, above, mean, m2, lo, hi = stats[j].tolist()
            sample = samples[j]
            bound = sample_size or max(int(sample.size), 1)
            if sample.size < min(bound, int(count)):  # a window drew fewer than asked
                bound = max(int(sample.size), 1)
            cols[name] = NumericProfile(
                self.edges[j],
                ints[self.bin_offsets[j] : self.bin_offsets[j + 1]],
                below=int(below),
                above=int(above),
                count=int(count),
                missing=int(missing),
                mean=mean,
                m2=m2 if count else 0.0,
                min=lo,
                max=hi,
                sample=sample,
                sample_size=bound,
                seed=seed,
            )
        for j, name in enumerate(self.categorical):
            part = ints[self.cat_offsets[j] : self.cat_offsets[j + 1]].tolist()
            counts = {c: n for c, n in zip(self.categories[j], part, strict=True) if n}
            missing = int(ints[int(self.cat_offsets[-1]) + j])
            cols[name] = CategoricalProfile(counts, missing, self.max_categories[j])
        return DatasetProfile(n_rows, {n: cols[n] for n in self.order})

    def decode(self, d: Mapping[str, Any], seed: int) -> DatasetProfile:
        n, f, ints = self.blocks(d)
        samples = [row[N_STATS:][np.isfinite(row[N_STATS:])] for row in f]
        return self.profile(n, f[:, :N_STATS], samples, ints, seed, int(d["s"]))


@dataclass(frozen=True, eq=False)
class Layout:
    """Everything a model version's buckets are profiled on."""

    inputs: PartLayout
    prediction: PartLayout
    multivariate: PartLayout | None

    @cached_property
    def digest(self) -> str:
        mv = self.multivariate.digest if self.multivariate is not None else "-"
        return hashlib.sha256(
            f"{self.inputs.digest}/{self.prediction.digest}/{mv}".encode()
        ).hexdigest()[:16]


#: the column of the multivariate part: a row's PCA reconstruction error
ERROR = "reconstruction_error"
