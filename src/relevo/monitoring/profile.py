"""Mergeable statistical profiles: what monitoring compares, instead of logged rows.

A *reference* profile is computed from a model's training data when the model is registered.
Production data is then profiled window by window ON THE SAME BINS (`reference.empty_like()`
then `.update(batch)` as predictions are logged), and the profile of any period, across any
number of server replicas, is a `merge` of small window profiles, never a rescan of rows.

The profiles are values, in the spirit of river's running statistics:

* `update(batch)` and `merge(other)` return new profiles and never change their inputs;
* all state is in the dataclass fields (no hidden generator: the reservoir sample's random
  draws are seeded from `seed`, the counts and the batch, so they are reproducible);
* `to_dict()` gives plain JSON data (lists, ints, floats; NaN as null, +-inf as "inf" /
  "-inf") and `from_dict()` gives back an equal profile;
* merging is exact for counts, range and missing values, and exact up to float rounding for
  the mean and variance (Welford per batch, Chan et al.'s parallel formula across batches):
  `a.merge(b)` profiles the concatenation of `a`'s and `b`'s data, in any order.

Column profiles (`NumericProfile` lives in `relevo.monitoring.numeric`, the rest here):

`NumericProfile`
    `edges` are the reference's 0, 0.1, ..., 1 quantiles (`bins=10`), deduplicated, so at
    most 11 edges from min to max; a column with at most `bins` distinct values gets one bin
    per value instead, and a constant column a single bin. The edges never change afterwards.
    Bins are (-inf, e1), [e1, e2), ..., [e_last-1, +inf): production values outside the
    reference range land in the outer bins, and are also counted in `below` / `above` (an
    out-of-range signal). `count` / `missing` count non-missing and missing values (NaN,
    None, pd.NA and +-inf are missing), `mean` / `m2` / `min` / `max` the moments and range,
    and `sample` is a uniform random sample of up to `sample_size` raw values for exact
    two-sample tests (merging two samples draws from each in proportion to its count, a
    hypergeometric split, so the result is again a uniform sample of the union).
`CategoricalProfile`
    `counts` per category (as a string), `missing`; past `max_categories` distinct
    categories, the rarest are folded into "__other__".

`DatasetProfile` holds one column profile per input column and the number of rows.

The model's prediction distribution needs no special type: profile the scores (probabilities
of the positive class, regression values, one column per class probability) as a
`NumericProfile`, or the predicted labels as a `CategoricalProfile`; e.g. a
`DatasetProfile.reference(predictions, {"score": "number", "label": "string"})`.

Profiling is vectorised (quantiles, `np.searchsorted` + `np.bincount`, pandas'
`value_counts`): no Python code runs per row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from relevo.monitoring.numeric import NumericProfile, check_counts

__all__ = [
    "KINDS",
    "OTHER_CATEGORY",
    "CategoricalProfile",
    "ColumnProfile",
    "DatasetProfile",
    "NumericProfile",
]

OTHER_CATEGORY = "__other__"
#: values a categorical column is counted in at a time: counting a long column (a frame of
#: millions of rows) then needs the temporaries of one block (pandas counts a `category`
#: column with `np.bincount`, which first widens its codes to 8 bytes a value)
COUNT_BLOCK = 1 << 16

# --------------------------------------------------------------------------- categorical


def _fold(counts: Mapping[str, int], max_categories: int) -> dict[str, int]:
    """Positive counts in canonical order (most frequent first, then by name), with all but
    the `max_categories` most frequent categories folded into OTHER_CATEGORY."""
    other = counts.get(OTHER_CATEGORY, 0)
    ranked = sorted(
        ((k, v) for k, v in counts.items() if k != OTHER_CATEGORY and v > 0),
        key=lambda kv: (-kv[1], kv[0]),
    )
    other += sum(v for _, v in ranked[max_categories:])
    out = dict(ranked[:max_categories])
    if other > 0:
        out[OTHER_CATEGORY] = other
    return out


def _count_categories(values: Any) -> tuple[dict[str, int], int]:
    """Counts of each category (as str: True -> "True", 3 -> "3") and the number missing."""
    series = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    if series.ndim != 1:
        raise ValueError("values must be one-dimensional")
    counts: dict[str, int] = {}
    seen = 0
    for start in range(0, len(series), COUNT_BLOCK):
        part = series if len(series) <= COUNT_BLOCK else series.iloc[start : start + COUNT_BLOCK]
        observed = part.value_counts(dropna=True, sort=False)
        for key, n in zip(observed.index, observed.to_numpy(), strict=True):
            if n > 0:
                name = str(key)
                counts[name] = counts.get(name, 0) + int(n)
        seen += int(observed.sum())
    return counts, len(series) - seen


@dataclass(frozen=True)
class CategoricalProfile:
    """Category counts of one categorical (string or boolean) column.

    Categories are strings (`str(value)`: True -> "True"). Only the `max_categories` most
    frequent are kept by name; the rest are folded into "__other__". While a profile stays
    under the limit its counts are exact and merges are exact; past it, which categories keep
    their names can depend on the order of updates and merges (a heavy-hitters sketch).
    """

    counts: dict[str, int] = field(default_factory=dict)
    missing: int = 0
    max_categories: int = 1000

    def __post_init__(self) -> None:
        if self.max_categories < 1:
            raise ValueError("max_categories must be at least 1")
        counts = {str(k): int(v) for k, v in self.counts.items()}
        check_counts("counts", *counts.values(), self.missing)
        object.__setattr__(self, "counts", _fold(counts, self.max_categories))
        object.__setattr__(self, "missing", int(self.missing))
        object.__setattr__(self, "max_categories", int(self.max_categories))

    @classmethod
    def reference(cls, values: Any, max_categories: int = 1000) -> CategoricalProfile:
        return cls(max_categories=max_categories).update(values)

    def empty_like(self) -> CategoricalProfile:
        return CategoricalProfile(max_categories=self.max_categories)

    @property
    def count(self) -> int:
        """Number of non-missing values."""
        return sum(self.counts.values())

    @property
    def categories(self) -> list[str]:
        """Categories seen, most frequent first."""
        return list(self.counts)

    @property
    def missing_share(self) -> float:
        seen = self.count + self.missing
        return self.missing / seen if seen else math.nan

    def proportions(self, categories: Sequence[str] | None = None) -> np.ndarray:
        """Share of the non-missing values in each of `categories` (default: this profile's).

        Values of categories not listed count toward "__other__" if it is listed, and are
        otherwise left out (so the shares then sum to less than 1). NaN when nothing was seen.
        """
        cats = self.categories if categories is None else list(categories)
        total = self.count
        if total == 0:
            return np.full(len(cats), math.nan)
        out = np.array([self.counts.get(c, 0) for c in cats], dtype=np.float64)
        if OTHER_CATEGORY in cats:
            listed = set(cats)
            out[cats.index(OTHER_CATEGORY)] += sum(
                v for c, v in self.counts.items() if c not in listed
            )
        return out / total

    def update(self, values: Any) -> CategoricalProfile:
        counts, missing = _count_categories(values)
        return self._combine(counts, missing, self.max_categories)

    def merge(self, other: CategoricalProfile) -> CategoricalProfile:
        if not isinstance(other, CategoricalProfile):
            raise TypeError(f"cannot merge a CategoricalProfile with {type(other).__name__}")
        return self._combine(
            other.counts, other.missing, min(self.max_categories, other.max_categories)
        )

    def _combine(
        self, counts: Mapping[str, int], missing: int, max_categories: int
    ) -> CategoricalProfile:
        merged = dict(self.counts)
        for k, v in counts.items():
            merged[k] = merged.get(k, 0) + v
        return CategoricalProfile(merged, self.missing + missing, max_categories)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "categorical",
            "counts": dict(self.counts),
            "missing": self.missing,
            "max_categories": self.max_categories,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CategoricalProfile:
        try:
            return cls(dict(d["counts"]), d["missing"], d["max_categories"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a categorical profile: {exc!r}") from exc


ColumnProfile = NumericProfile | CategoricalProfile


def column_from_dict(d: Mapping[str, Any]) -> ColumnProfile:
    kind = d.get("type")
    if kind == "numeric":
        return NumericProfile.from_dict(d)
    if kind == "categorical":
        return CategoricalProfile.from_dict(d)
    raise ValueError(f"unknown column profile type {kind!r}")


NUMERIC_KINDS = frozenset({"number", "integer"})
CATEGORICAL_KINDS = frozenset({"boolean", "string"})
KINDS = NUMERIC_KINDS | CATEGORICAL_KINDS

FORMAT_VERSION = 1


@dataclass(frozen=True)
class DatasetProfile:
    """One profile per column of a table, plus the number of rows profiled."""

    n_rows: int = 0
    columns: dict[str, ColumnProfile] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.n_rows < 0:
            raise ValueError("n_rows must not be negative")
        for name, col in self.columns.items():
            if not isinstance(col, NumericProfile | CategoricalProfile):
                raise TypeError(f"column {name!r} is a {type(col).__name__}, not a profile")
        object.__setattr__(self, "n_rows", int(self.n_rows))
        object.__setattr__(self, "columns", dict(self.columns))

    @classmethod
    def reference(
        cls,
        frame: pd.DataFrame,
        kinds: Mapping[str, str],
        bins: int = 10,
        sample_size: int = 1000,
        seed: int = 0,
        max_categories: int = 1000,
    ) -> DatasetProfile:
        """Profile reference (training) data.

        `kinds` maps each column to profile to "number" or "integer" (numeric profile) or
        "boolean" or "string" (categorical profile); other columns of `frame` are ignored.
        """
        unknown = {k for k in kinds.values() if k not in KINDS}
        if unknown:
            raise ValueError(f"unknown column kinds {sorted(unknown)}; expected {sorted(KINDS)}")
        absent = [name for name in kinds if name not in frame.columns]
        if absent:
            raise ValueError(f"columns missing from the frame: {absent}")
        columns: dict[str, ColumnProfile] = {}
        for name, kind in kinds.items():
            try:
                if kind in NUMERIC_KINDS:
                    columns[name] = NumericProfile.reference(
                        frame[name], bins=bins, sample_size=sample_size, seed=seed
                    )
                else:
                    columns[name] = CategoricalProfile.reference(
                        frame[name], max_categories=max_categories
                    )
            except ValueError as exc:
                raise ValueError(f"column {name!r}: {exc}") from exc
        return cls(len(frame), columns)

    def empty_like(self, seed: int | None = None) -> DatasetProfile:
        """Same columns and bins, nothing counted (`seed` replaces the numeric columns' seed,
        e.g. one per replica)."""
        return DatasetProfile(
            0,
            {
                name: col.empty_like(seed) if isinstance(col, NumericProfile) else col.empty_like()
                for name, col in self.columns.items()
            },
        )

    def update(self, frame: pd.DataFrame) -> DatasetProfile:
        """A new profile with the rows of `frame` added. A profiled column absent from the
        frame counts as missing in every row; extra columns are ignored."""
        n = len(frame)
        columns: dict[str, ColumnProfile] = {}
        for name, col in self.columns.items():
            if name not in frame.columns:
                columns[name] = replace(col, missing=col.missing + n)
                continue
            try:
                columns[name] = col.update(frame[name])
            except ValueError as exc:
                raise ValueError(f"column {name!r}: {exc}") from exc
        return DatasetProfile(self.n_rows + n, columns)

    def merge(self, other: DatasetProfile) -> DatasetProfile:
        """The profile of both profiles' rows; they must profile the same columns."""
        if not isinstance(other, DatasetProfile):
            raise TypeError(f"cannot merge a DatasetProfile with {type(other).__name__}")
        if set(self.columns) != set(other.columns):
            raise ValueError(
                f"cannot merge profiles of different columns: {sorted(self.columns)} "
                f"vs {sorted(other.columns)}"
            )
        columns: dict[str, ColumnProfile] = {}
        for name, col in self.columns.items():
            theirs = other.columns[name]
            if type(col) is not type(theirs):
                raise ValueError(f"column {name!r} is numeric in one profile only")
            try:
                columns[name] = col.merge(theirs)  # type: ignore[arg-type]
            except ValueError as exc:
                raise ValueError(f"column {name!r}: {exc}") from exc
        return DatasetProfile(self.n_rows + other.n_rows, columns)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe data: plain dicts, lists, ints, floats and strings."""
        return {
            "version": FORMAT_VERSION,
            "n_rows": self.n_rows,
            "columns": {name: col.to_dict() for name, col in self.columns.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DatasetProfile:
        try:
            version = d["version"]
            if version != FORMAT_VERSION:
                raise ValueError(f"unsupported profile format version {version!r}")
            columns = {str(name): column_from_dict(col) for name, col in d["columns"].items()}
            return cls(d["n_rows"], columns)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a dataset profile: {exc!r}") from exc
