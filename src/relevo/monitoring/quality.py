"""`QualityProfile`: the data-quality counts of a time bucket that the column profiles lack.

Missing values and values outside the reference range are counted by the column profiles
(`NumericProfile.missing`, `.below`, `.above`; a category the reference never showed is folded
into "__other__" of the production `CategoricalProfile`). This profile keeps the rest:

* unseen categories BY NAME, per categorical column (`Unseen`): the exact number of such values,
  a mergeable top-k of the names (a Misra-Gries summary, exact while a column has at most `k`
  distinct unseen names) and a mergeable distinct count (a k-minimum-values sketch on a 64-bit
  hash of each name: exact under `kmv` distinct names, about 1/sqrt(kmv) relative error above),
  so a high-cardinality column such as a postcode stays a few hundred bytes per bucket;
* columns sent that the model does not use, counted by name in rows;
* rows rejected by validation (the request got a 422), counted by reason;
* rows the model failed on (the request got an error, or a challenger's rows fell back);
* rows whose output is NaN (a degenerate model; with the prediction profile's spread and
  category counts this tells constant scores and single classes too).

Like every profile it is an immutable value: `merge` returns a new one, in any order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: names kept per column by the unseen-category top-k
TOP_K = 20
#: hashes kept per column by the distinct-count sketch
KMV = 64
_TWO64 = float(2**64)


def hash_names(names: Iterable[str]) -> np.ndarray:
    """Stable 64-bit hashes of category names (the same in every process and replica)."""
    arr = np.asarray(list(names), dtype=object)
    if arr.size == 0:
        return np.empty(0, np.uint64)
    return pd.util.hash_array(arr, categorize=False)


def _misra_gries(counts: Mapping[str, int], k: int) -> dict[str, int]:
    """A Misra-Gries summary of `counts` with at most `k` counters: exact when there are at
    most `k` names; otherwise every count is lowered by the (k+1)-th largest (so each kept
    count undercounts by at most total / (k + 1)) and non-positive ones are dropped. Merging
    two summaries this way is again a valid summary (Agarwal et al., Mergeable summaries)."""
    ranked = sorted(((n, c) for n, c in counts.items() if c > 0), key=lambda nc: (-nc[1], nc[0]))
    if len(ranked) <= k:
        return dict(ranked)
    cut = ranked[k][1]
    return {n: c - cut for n, c in ranked[:k] if c > cut}


@dataclass(frozen=True)
class Unseen:
    """Values of one categorical column that the reference never showed."""

    #: how many values were unseen (exact)
    total: int = 0
    #: the most frequent unseen names with (lower bounds of) their counts
    top: dict[str, int] = field(default_factory=dict)
    #: the smallest distinct 64-bit hashes of the unseen names, ascending (KMV sketch)
    hashes: tuple[int, ...] = ()
    k: int = TOP_K
    kmv: int = KMV

    @classmethod
    def of(cls, counts: Mapping[str, int], k: int = TOP_K, kmv: int = KMV) -> Unseen:
        """The summary of exact counts of unseen names (one batch)."""
        hashes = np.unique(hash_names(counts))[:kmv]
        return cls(
            int(sum(counts.values())), _misra_gries(counts, k), tuple(hashes.tolist()), k, kmv
        )

    @property
    def distinct(self) -> float:
        """The number of distinct unseen names: exact under `kmv`, estimated above it."""
        if len(self.hashes) < self.kmv:
            return float(len(self.hashes))
        # (k - 1) / (k-th smallest hash as a share of the hash space): the KMV estimator
        return (self.kmv - 1) / ((self.hashes[-1] + 1) / _TWO64)

    def merge(self, other: Unseen) -> Unseen:
        k, kmv = min(self.k, other.k), min(self.kmv, other.kmv)
        top = dict(self.top)
        for name, c in other.top.items():
            top[name] = top.get(name, 0) + c
        hashes = sorted(set(self.hashes) | set(other.hashes))[:kmv]
        return Unseen(self.total + other.total, _misra_gries(top, k), tuple(hashes), k, kmv)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "top": self.top,
            # as hex text: JSON numbers past 2**53 lose digits in many readers
            "hashes": [f"{h:016x}" for h in self.hashes],
            "k": self.k,
            "kmv": self.kmv,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Unseen:
        return cls(
            int(d["total"]),
            {str(n): int(c) for n, c in d["top"].items()},
            tuple(int(h, 16) for h in d["hashes"]),
            int(d["k"]),
            int(d["kmv"]),
        )


def _add(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class QualityProfile:
    """Data-quality counts of a bucket or window (see the module docstring)."""

    #: categorical column -> its unseen values
    unseen: dict[str, Unseen] = field(default_factory=dict)
    #: column name -> rows that carried it although the model does not use it
    unused: dict[str, int] = field(default_factory=dict)
    #: rows rejected by validation (their request was answered 422)
    rejected: int = 0
    #: reason -> rejected rows with a problem of that reason (a row may have several)
    reasons: dict[str, int] = field(default_factory=dict)
    #: rows the model failed on
    failed: int = 0
    #: rows answered with a NaN output
    nan_outputs: int = 0

    def __post_init__(self) -> None:
        for name in ("rejected", "failed", "nan_outputs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    @property
    def empty(self) -> bool:
        return not (self.unseen or self.unused or self.rejected or self.failed or self.nan_outputs)

    def merge(self, other: QualityProfile) -> QualityProfile:
        if not isinstance(other, QualityProfile):
            raise TypeError(f"cannot merge a QualityProfile with {type(other).__name__}")
        unseen = dict(self.unseen)
        for col, u in other.unseen.items():
            unseen[col] = unseen[col].merge(u) if col in unseen else u
        return QualityProfile(
            dict(sorted(unseen.items())),
            _add(self.unused, other.unused),
            self.rejected + other.rejected,
            _add(self.reasons, other.reasons),
            self.failed + other.failed,
            self.nan_outputs + other.nan_outputs,
        )

    @classmethod
    def merge_many(cls, profiles: Iterable[QualityProfile]) -> QualityProfile:
        out = cls()
        for p in profiles:
            if not p.empty:
                out = out.merge(p)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Compact JSON data: empty parts are left out."""
        d: dict[str, Any] = {}
        if self.unseen:
            d["unseen"] = {c: u.to_dict() for c, u in self.unseen.items()}
        if self.unused:
            d["unused"] = self.unused
        if self.rejected:
            d["rejected"] = self.rejected
        if self.reasons:
            d["reasons"] = self.reasons
        if self.failed:
            d["failed"] = self.failed
        if self.nan_outputs:
            d["nan_outputs"] = self.nan_outputs
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QualityProfile:
        try:
            return cls(
                {str(c): Unseen.from_dict(u) for c, u in d.get("unseen", {}).items()},
                {str(c): int(n) for c, n in d.get("unused", {}).items()},
                int(d.get("rejected", 0)),
                {str(r): int(n) for r, n in d.get("reasons", {}).items()},
                int(d.get("failed", 0)),
                int(d.get("nan_outputs", 0)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a quality profile: {exc!r}") from exc
