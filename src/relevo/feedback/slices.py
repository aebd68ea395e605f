"""Slices: a feature's rows as level codes on the reference bins, and its candidate conditions.

A numeric feature's levels are the reference profile's bins (`NumericProfile.edges`, bin i is
[e_i, e_i+1) with open outer bins) plus one for missing values; its candidate slices are every
run of adjacent bins (not the whole range) and "is missing". A categorical feature's levels are
the reference's named categories, one for any other value ("not in reference") and one for
missing values; each level is a slice of its own. `worst_segments` counts rows per level with
`bincount` and turns the counts into counts per slice with `Feature.expand`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from relevo.errors import InvalidInputError
from relevo.monitoring.numeric import NumericProfile
from relevo.monitoring.profile import OTHER_CATEGORY, CategoricalProfile

__all__ = ["Condition", "Feature", "categories", "encode"]


@dataclass(frozen=True)
class Condition:
    """One condition on one feature: a range [low, high), a category, unseen, or missing."""

    feature: str
    kind: str  # "range", "category", "other" or "missing"
    low: float = -math.inf
    high: float = math.inf
    category: str = ""

    def __str__(self) -> str:
        if self.kind == "missing":
            return f"{self.feature} is missing"
        if self.kind == "other":
            return f"{self.feature} not in reference"
        if self.kind == "category":
            return f"{self.feature} = {self.category}"
        if self.low == -math.inf:
            return f"{self.feature} < {self.high:.6g}"
        if self.high == math.inf:
            return f"{self.feature} >= {self.low:.6g}"
        return f"{self.low:.6g} <= {self.feature} < {self.high:.6g}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: open range ends as None."""
        out: dict[str, Any] = {"feature": self.feature, "kind": self.kind}
        if self.kind == "range":
            out["low"] = float(self.low) if math.isfinite(self.low) else None
            out["high"] = float(self.high) if math.isfinite(self.high) else None
        if self.kind == "category":
            out["category"] = self.category
        return out

    def mask(self, frame: pd.DataFrame, known: Sequence[str] = ()) -> np.ndarray:
        """Which rows of `frame` meet the condition (`known`: the reference's categories)."""
        column = frame[self.feature]
        if self.kind == "range":
            x = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            return np.asarray((x >= self.low) & (x < self.high) & np.isfinite(x))
        missing = column.isna().to_numpy()
        if self.kind == "missing":
            return missing if column.dtype.kind not in "fc" else ~np.isfinite(column.to_numpy())
        names = column.astype(str).to_numpy()
        if self.kind == "category":
            return np.asarray((names == self.category) & ~missing)
        return np.asarray(~np.isin(names, list(known)) & ~missing)


@dataclass(frozen=True)
class Feature:
    """A feature's rows as level codes, and its candidate slices as sets of levels."""

    name: str
    codes: np.ndarray  # int64, one level per row
    levels: int
    options: np.ndarray  # (n_options, levels) 0/1 matrix: which levels each slice takes
    conditions: list[Condition]
    #: one slice per level (categorical): sums per level are already sums per slice
    identity: bool = False

    def expand(self, per_level: np.ndarray, axis: int) -> np.ndarray:
        """Sums per level (along `axis`) as sums per slice (a categorical feature of 1,000
        categories needs no 1,000 x 1,000 product)."""
        if self.identity:
            return per_level
        return np.moveaxis(np.tensordot(self.options, per_level, axes=([1], [axis])), 0, axis)


def encode(name: str, column: pd.Series, profile: NumericProfile | CategoricalProfile) -> Feature:
    if isinstance(profile, NumericProfile):
        return _encode_numeric(name, column, profile)
    return _encode_categorical(name, column, profile)


def _encode_numeric(name: str, column: pd.Series, profile: NumericProfile) -> Feature:
    try:
        x = pd.to_numeric(column, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"column {name!r} must be numeric, as in the reference: {exc}"
        ) from None
    edges, bins = profile.edges, profile.n_bins
    # bin i is [e_i, e_i+1) as in NumericProfile; a few comparisons beat a binary search
    codes = np.zeros(x.size, dtype=np.int64)
    for edge in edges[1:-1]:
        codes += x >= edge
    codes[~np.isfinite(x)] = bins
    # Python floats: a condition's ends reach JSON (orjson refuses NumPy scalars)
    bounds = [-math.inf, *edges[1:-1].tolist(), math.inf] if bins > 1 else None
    rows, conditions = [], []
    for lo in range(bins):
        for hi in range(lo, bins):
            if bounds is None or (lo == 0 and hi == bins - 1):
                continue  # the whole range: every non-missing row
            option = np.zeros(bins + 1)
            option[lo : hi + 1] = 1.0
            rows.append(option)
            conditions.append(Condition(name, "range", bounds[lo], bounds[hi + 1]))
    missing = np.zeros(bins + 1)
    missing[bins] = 1.0
    rows.append(missing)
    conditions.append(Condition(name, "missing"))
    return Feature(name, codes.astype(np.int64), bins + 1, np.array(rows), conditions)


def _encode_categorical(name: str, column: pd.Series, profile: CategoricalProfile) -> Feature:
    known = categories(profile)
    k = len(known)
    values = pd.Categorical(column)
    lookup = {category: i for i, category in enumerate(known)}
    per_value = np.array([lookup.get(str(v), k) for v in values.categories] + [k + 1])
    codes = per_value[values.codes]  # code -1 (missing) takes the last entry
    conditions = [Condition(name, "category", category=c) for c in known]
    conditions += [Condition(name, "other"), Condition(name, "missing")]
    return Feature(name, codes.astype(np.int64), k + 2, np.eye(k + 2), conditions, True)


def categories(profile: CategoricalProfile) -> list[str]:
    return [c for c in profile.counts if c != OTHER_CATEGORY]
