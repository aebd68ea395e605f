"""`NumericProfile`: the mergeable profile of one numeric column.

It is an immutable value: `update(values)` and `merge(other)` return new profiles and leave
their inputs alone, every bit of state is a field (the random draws of the reservoir sample
are seeded from the fields and the batch, never from a hidden generator), and `to_dict()` /
`from_dict()` round-trip through JSON exactly. See `relevo.monitoring.profile` for the overview.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

_NEG_INF, _POS_INF = "-inf", "inf"
#: quantile bins per numeric column of a reference (see docs/monitoring.md, "Profiles", for the
#: choice): registration and `relevo.drift` profile references on the same bins
BINS = 20


# --------------------------------------------------------------------------- helpers


def encode_float(x: float) -> float | str | None:
    """A float as JSON-safe data: finite floats as they are, NaN as None, +-inf as strings."""
    if math.isfinite(x):
        return float(x)
    if math.isnan(x):
        return None
    return _POS_INF if x > 0 else _NEG_INF


def decode_float(x: float | str | None) -> float:
    """The inverse of `encode_float`."""
    if x is None:
        return math.nan
    if x == _POS_INF:
        return math.inf
    if x == _NEG_INF:
        return -math.inf
    return float(x)


def _float_values(values: Any) -> np.ndarray:
    """Any 1-D sequence of numbers (list, numpy array, pandas Series, with None / NaN / pd.NA)
    as a float64 array, missing values as NaN."""
    try:
        if isinstance(values, pd.Series | pd.Index):
            if isinstance(values.dtype, np.dtype) and values.dtype.kind in "fiub":
                arr = values.to_numpy()
            else:
                arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            arr = np.asarray(values)
            if arr.ndim == 1 and arr.dtype.kind not in "fiub":
                arr = pd.Series(arr, dtype=object).to_numpy(dtype=np.float64, na_value=np.nan)
        arr = arr.astype(np.float64, copy=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"values are not numeric: {exc}") from exc
    if arr.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {arr.shape}")
    return arr


def _finite(values: Any) -> tuple[np.ndarray, int]:
    """The finite values and how many were missing (NaN, None, pd.NA or +-inf)."""
    arr = _float_values(values)
    ok = np.isfinite(arr)
    n_ok = int(np.count_nonzero(ok))
    if n_ok == arr.size:
        return arr, 0
    return arr[ok], arr.size - n_ok


def _bits(x: float) -> int:
    return int(np.float64(x).view(np.uint64))


def _rng(*parts: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(p) for p in parts]))


def _chan(
    n_a: int, mean_a: float, m2_a: float, n_b: int, mean_b: float, m2_b: float
) -> tuple[int, float, float]:
    """Count, mean and M2 of the union of two parts (Chan, Golub & LeVeque's parallel formula)."""
    if n_b == 0:
        return n_a, mean_a, m2_a
    if n_a == 0:
        return n_b, mean_b, m2_b
    n = n_a + n_b
    delta = mean_b - mean_a
    return n, mean_a + delta * (n_b / n), m2_a + m2_b + delta * delta * (n_a / n * n_b)


def _hypergeometric(rng: np.random.Generator, good: int, bad: int, nsample: int) -> int:
    """How many of `nsample` draws without replacement from `good + bad` items are good."""
    if nsample == 0 or good == 0:
        return 0
    if bad == 0:
        return nsample
    if good < 10**9 and bad < 10**9:
        return int(rng.hypergeometric(good, bad, nsample))
    hits = 0  # numpy's limit; nsample is a sample size (small), so draw one by one
    for u in rng.random(nsample):
        if u * (good + bad) < good:
            hits, good = hits + 1, good - 1
        else:
            bad -= 1
    return hits


def _merge_samples(
    rng: np.random.Generator, a: np.ndarray, n_a: int, b: np.ndarray, n_b: int, k: int
) -> np.ndarray:
    """A uniform sample of size min(k, n_a + n_b) of the union of two populations, given a
    uniform sample of each (of size min(sample_size, population) >= min(k, population))."""
    k = min(k, n_a + n_b)
    if n_b == 0 and a.size <= k:
        return a
    if n_a == 0 and b.size <= k:
        return b
    from_a = _hypergeometric(rng, n_a, n_b, k)
    part_a = a if from_a == a.size else a[rng.choice(a.size, from_a, replace=False)]
    part_b = b if k - from_a == b.size else b[rng.choice(b.size, k - from_a, replace=False)]
    out = np.concatenate([part_a, part_b])
    rng.shuffle(out)
    return out


def reference_edges(values: np.ndarray, bins: int, *, overwrite: bool = False) -> np.ndarray:
    """Bin edges for finite reference values: the 0, 1/bins, ..., 1 quantiles, deduplicated.

    When ties leave fewer than bins + 1 edges and the column has at most `bins` distinct
    values (a flag, a count, a rating), every distinct value gets its own bin instead: the
    edges are min, the midpoints between neighbours, and max. A constant column has one edge
    and so one bin; an empty one has no edges and one bin. `overwrite`: `values` may be
    reordered in place (the same edges, without a copy of the values).
    """
    if values.size == 0:
        return np.empty(0)
    q = np.linspace(0.0, 1.0, bins + 1)
    edges = np.unique(np.quantile(values, q, overwrite_input=overwrite))
    if edges.size < bins + 1:
        distinct = _sorted_distinct(values) if overwrite else np.unique(values)
        if 1 < distinct.size <= bins:
            mids = distinct[:-1] + (distinct[1:] - distinct[:-1]) / 2
            edges = np.unique(np.concatenate([distinct[:1], mids, distinct[-1:]]))
    return edges


def _sorted_distinct(values: np.ndarray) -> np.ndarray:
    """`np.unique(values)` for a 1-D array it may sort in place (np.unique sorts a copy)."""
    values.sort()
    keep = np.empty(values.size, dtype=bool)
    keep[:1] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


def check_counts(name: str, *values: int) -> None:
    if any(v < 0 for v in values):
        raise ValueError(f"{name} must not be negative")


# --------------------------------------------------------------------------- numeric


@dataclass(frozen=True, eq=False)
class NumericProfile:
    """Fixed-bin histogram, moments, range and reservoir sample of one numeric column.

    Bins are (-inf, e1), [e1, e2), ..., [e_last-1, +inf) for edges e0..e_last, so values
    outside the reference range land in the outer bins; `below` / `above` count the values
    under e0 / over e_last. NaN, None, pd.NA and +-inf count as `missing` and nowhere else.
    `mean` / `min` / `max` are NaN and `m2` is 0 until a value is seen.
    """

    edges: np.ndarray
    counts: np.ndarray
    below: int = 0
    above: int = 0
    count: int = 0
    missing: int = 0
    mean: float = math.nan
    m2: float = 0.0
    min: float = math.nan
    max: float = math.nan
    sample: np.ndarray = field(default_factory=lambda: np.empty(0))
    sample_size: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        edges = np.array(self.edges, dtype=np.float64, copy=True)
        counts = np.array(self.counts, dtype=np.int64, copy=True)
        sample = np.array(self.sample, dtype=np.float64, copy=True)
        if edges.ndim != 1 or not np.isfinite(edges).all() or np.any(np.diff(edges) <= 0):
            raise ValueError("edges must be finite and strictly increasing")
        if counts.shape != (max(edges.size - 1, 1),):
            raise ValueError(f"{edges.size} edges need {max(edges.size - 1, 1)} counts")
        check_counts("counts", *counts.tolist(), self.below, self.above, self.count)
        check_counts("missing, sample_size and seed", self.missing, self.sample_size, self.seed)
        if int(counts.sum()) != self.count:
            raise ValueError("counts must add up to count")
        if self.below > counts[0] or self.above > counts[-1]:
            raise ValueError("below / above cannot exceed the outer bins' counts")
        if sample.shape != (min(self.sample_size, self.count),):
            raise ValueError("the sample must hold min(sample_size, count) values")
        for name, arr in (("edges", edges), ("counts", counts), ("sample", sample)):
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        for name in ("below", "above", "count", "missing", "sample_size", "seed"):
            object.__setattr__(self, name, int(getattr(self, name)))
        for name in ("mean", "m2", "min", "max"):
            object.__setattr__(self, name, float(getattr(self, name)))

    # ---- construction

    @classmethod
    def reference(
        cls, values: Any, bins: int = 10, sample_size: int = 1000, seed: int = 0
    ) -> NumericProfile:
        """Profile reference values: bin edges from their quantiles, then their counts."""
        if bins < 1:
            raise ValueError("bins must be at least 1")
        x, missing = _finite(values)
        edges = reference_edges(x, bins)
        empty = cls(
            edges, np.zeros(max(edges.size - 1, 1), np.int64), sample_size=sample_size, seed=seed
        )
        return empty._add(x, missing)

    def empty_like(self, seed: int | None = None) -> NumericProfile:
        """Same bins, sample size and seed (unless given), nothing counted."""
        return NumericProfile(
            self.edges,
            np.zeros_like(self.counts),
            sample_size=self.sample_size,
            seed=self.seed if seed is None else seed,
        )

    # ---- statistics

    @property
    def n_bins(self) -> int:
        return int(self.counts.size)

    @property
    def variance(self) -> float:
        """Sample variance (ddof=1, as pandas); NaN under two values."""
        return self.m2 / (self.count - 1) if self.count > 1 else math.nan

    @property
    def std(self) -> float:
        return math.sqrt(self.variance)

    @property
    def missing_share(self) -> float:
        """missing / (count + missing); NaN when nothing was seen."""
        seen = self.count + self.missing
        return self.missing / seen if seen else math.nan

    @property
    def proportions(self) -> np.ndarray:
        """Share of the non-missing values in each bin; NaN when there are none."""
        if self.count == 0:
            return np.full(self.n_bins, math.nan)
        return self.counts / self.count

    # ---- update / merge

    def update(self, values: Any) -> NumericProfile:
        """A new profile with `values` added (on this profile's bins)."""
        x, missing = _finite(values)
        return self._add(x, missing)

    def _add(self, x: np.ndarray, missing: int) -> NumericProfile:
        n = int(x.size)
        if n == 0:
            return replace(self, missing=self.missing + missing)
        edges = self.edges
        bins = np.searchsorted(edges[1:-1], x, side="right")
        counts = self.counts + np.bincount(bins, minlength=self.n_bins)
        below = int(np.count_nonzero(x < edges[0])) if edges.size else 0
        above = int(np.count_nonzero(x > edges[-1])) if edges.size else 0
        with np.errstate(over="ignore", invalid="ignore"):  # huge values: m2 -> inf, no warning
            batch_mean = float(x.mean())
            dev = x - batch_mean
            batch_m2 = float(np.dot(dev, dev))
            count, mean, m2 = _chan(self.count, self.mean, self.m2, n, batch_mean, batch_m2)
        rng = _rng(self.seed, self.count, self.missing, n, _bits(batch_mean), _bits(batch_m2))
        k = min(self.sample_size, n)
        batch_sample = x if k == n else x[rng.choice(n, k, replace=False)]
        sample = _merge_samples(rng, self.sample, self.count, batch_sample, n, self.sample_size)
        return replace(
            self,
            counts=counts,
            below=self.below + below,
            above=self.above + above,
            count=count,
            missing=self.missing + missing,
            mean=mean,
            m2=m2,
            min=float(np.fmin(self.min, x.min())),
            max=float(np.fmax(self.max, x.max())),
            sample=sample,
        )

    def merge(self, other: NumericProfile) -> NumericProfile:
        """The profile of both profiles' data; they must share their bin edges."""
        if not isinstance(other, NumericProfile):
            raise TypeError(f"cannot merge a NumericProfile with {type(other).__name__}")
        if not np.array_equal(self.edges, other.edges):
            raise ValueError("cannot merge numeric profiles with different bin edges")
        count, mean, m2 = _chan(self.count, self.mean, self.m2, other.count, other.mean, other.m2)
        k = min(self.sample_size, other.sample_size)
        rng = _rng(
            self.seed,
            self.count,
            self.missing,
            other.count,
            other.missing,
            _bits(self.mean),
            _bits(other.mean),
        )
        sample = _merge_samples(rng, self.sample, self.count, other.sample, other.count, k)
        return replace(
            self,
            counts=self.counts + other.counts,
            below=self.below + other.below,
            above=self.above + other.above,
            count=count,
            missing=self.missing + other.missing,
            mean=mean,
            m2=m2,
            min=float(np.fmin(self.min, other.min)),
            max=float(np.fmax(self.max, other.max)),
            sample=sample,
            sample_size=k,
        )

    # ---- serialisation

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "numeric",
            "edges": self.edges.tolist(),
            "counts": self.counts.tolist(),
            "below": self.below,
            "above": self.above,
            "count": self.count,
            "missing": self.missing,
            "mean": encode_float(self.mean),
            "m2": encode_float(self.m2),
            "min": encode_float(self.min),
            "max": encode_float(self.max),
            "sample": self.sample.tolist(),
            "sample_size": self.sample_size,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NumericProfile:
        try:
            return cls(
                edges=np.asarray(d["edges"], dtype=np.float64),
                counts=np.asarray(d["counts"], dtype=np.int64),
                below=d["below"],
                above=d["above"],
                count=d["count"],
                missing=d["missing"],
                mean=decode_float(d["mean"]),
                m2=decode_float(d["m2"]),
                min=decode_float(d["min"]),
                max=decode_float(d["max"]),
                sample=np.asarray(d["sample"], dtype=np.float64),
                sample_size=d["sample_size"],
                seed=d["seed"],
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a numeric profile: {exc!r}") from exc

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NumericProfile):
            return NotImplemented
        same_float = all(
            a == b or (math.isnan(a) and math.isnan(b))
            for a, b in (
                (self.mean, other.mean),
                (self.m2, other.m2),
                (self.min, other.min),
                (self.max, other.max),
            )
        )
        return (
            same_float
            and (self.below, self.above, self.count, self.missing, self.sample_size, self.seed)
            == (other.below, other.above, other.count, other.missing, other.sample_size, other.seed)
            and np.array_equal(self.edges, other.edges)
            and np.array_equal(self.counts, other.counts)
            and np.array_equal(self.sample, other.sample)
        )
