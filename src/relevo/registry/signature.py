"""A model's input signature, inferred from its reference data and used to validate requests.

Each column has a kind (number, integer, boolean, string), whether nulls were seen, the range
seen for numbers and the categories seen for strings. Requests are validated against it:
missing columns, wrong types and unexpected nulls are errors; unseen categories and values
outside the seen range are data-quality findings (or errors, if so configured).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd

from relevo.errors import InvalidInputError, Problem

Kind = Literal["number", "integer", "boolean", "string"]

#: above this many distinct values a string column is free text: categories are not enumerated
MAX_CATEGORIES = 1000


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: Kind
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    #: how serving rebuilds the column for a model fed a DataFrame, as the reference held it:
    #: a pandas categorical on `categories` (in the reference's order; LightGBM and XGBoost
    #: refuse another), and text whose missing values are None (not NaN, which an encoder
    #: fitted on None takes for an unknown category)
    as_category: bool = False
    missing_none: bool = False

    @cached_property
    def category_set(self) -> frozenset[str]:
        return frozenset(self.categories or ())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.categories is not None:
            out["categories"] = list(self.categories)
        for flag in ("as_category", "missing_none"):  # said only when set
            if not out[flag]:
                del out[flag]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnSpec:
        cats = data.get("categories")
        return cls(
            name=data["name"],
            kind=data["kind"],
            nullable=bool(data.get("nullable", False)),
            min=data.get("min"),
            max=data.get("max"),
            categories=tuple(cats) if cats is not None else None,
            as_category=bool(data.get("as_category", False)),
            missing_none=bool(data.get("missing_none", False)),
        )


@dataclass(frozen=True)
class Signature:
    """The model's input columns, in the order the model expects them."""

    columns: tuple[ColumnSpec, ...]
    _index: dict[str, ColumnSpec] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({c.name: c for c in self.columns})

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def kinds(self) -> dict[str, str]:
        return {c.name: c.kind for c in self.columns}

    def __getitem__(self, name: str) -> ColumnSpec:
        return self._index[name]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def to_dict(self) -> dict[str, Any]:
        return {"columns": [c.to_dict() for c in self.columns]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        return cls(tuple(ColumnSpec.from_dict(c) for c in data["columns"]))

    @classmethod
    def infer(cls, frame: pd.DataFrame, columns: list[str] | None = None) -> Signature:
        """Infer the signature of `columns` (default: all) from a reference DataFrame."""
        names = list(frame.columns) if columns is None else columns
        twice = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        if twice:
            raise InvalidInputError(
                f"the reference data names {len(twice)} column(s) more than once",
                [Problem("a second column of this name", column=c) for c in twice],
            )
        missing = [c for c in names if c not in frame.columns]
        if missing:
            raise InvalidInputError(
                f"the reference data lacks {len(missing)} column(s) the model needs",
                [Problem("missing from the reference data", column=c) for c in missing],
            )
        return cls(tuple(_infer_column(str(c), frame[c]) for c in names))


def _kind_of(series: pd.Series) -> Kind:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_numeric_dtype(dtype):
        return "number"
    values = series.dropna()
    if len(values) and values.map(lambda v: isinstance(v, bool)).all():
        return "boolean"
    if len(values) and values.map(lambda v: isinstance(v, (int, float, np.number))).all():
        return "number"
    return "string"


def _infer_column(name: str, series: pd.Series) -> ColumnSpec:
    nullable = bool(series.isna().any())
    values = series.dropna()
    if not len(values):  # missing in every row: nothing says numbers (text is the widest)
        return ColumnSpec(name, "string", True)
    kind = _kind_of(series)
    if kind == "string" and isinstance(series.dtype, pd.CategoricalDtype):
        ordered = tuple(str(c) for c in series.dtype.categories)
        return ColumnSpec(name, kind, nullable, categories=ordered, as_category=True)
    if kind in ("number", "integer"):
        arr = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        lo = float(arr.min()) if arr.size else None
        hi = float(arr.max()) if arr.size else None
        return ColumnSpec(name, kind, nullable, lo, hi)
    if kind == "string":
        uniques = pd.unique(values.astype(str))
        cats: tuple[str, ...] | None = (
            tuple(sorted(uniques)) if len(uniques) <= MAX_CATEGORIES else None
        )
        missing = series[series.isna()]
        none = bool(len(missing)) and series.dtype == object and all(v is None for v in missing)
        return ColumnSpec(name, kind, nullable, categories=cats, missing_none=none)
    return ColumnSpec(name, kind, nullable)
