"""Validating request rows against a model's signature: once per request, over all values.

The fast path does per request only what must be per request: the envelope, one pass that
reads every row's columns (a missing column fails it), one type check over all values of a
kind, and the numeric values as one NumPy matrix on which ranges, whole numbers and nulls are
checked at once; categories are set operations per column. Only when something is wrong does
`relevo.serving.diagnosis` walk the cells to list every problem with its row and column.

Errors (422): a row that is not an object, a missing column, a wrong type, a null where the
reference had none. Findings (answered, counted as data quality): a category the reference never
showed, a number outside the reference's range; either can be made an error by settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter, le
from typing import Any, NamedTuple

import numpy as np

from relevo.errors import InvalidInputError, Problem
from relevo.registry.signature import ColumnSpec, Signature
from relevo.serving import diagnosis
from relevo.serving.coercion import type_name

MAX_PROBLEMS = diagnosis.MAX_PROBLEMS
#: the store keeps routing keys of up to this many characters
MAX_KEY_LENGTH = diagnosis.MAX_KEY_LENGTH
_NUMBERS = frozenset({int, float})
_FLOAT_ONLY = {float}
_NONE = type(None)
_ALLOWED: dict[str, frozenset[type]] = {
    "boolean": frozenset({bool}),
    "string": frozenset({str}),
}
_KEY_TYPES = frozenset({str, int, _NONE})
#: the bounds of a column without a reference range in the one-pass check: every finite float
#: is within them, NaN and infinity are not
_MAX = float(np.finfo(np.float64).max)
#: an integer column's values must be below this in size (`coercion.fits_int64`)
_INT64 = 2.0**63
#: up to this many rows, the numbers are checked in one pass of C comparisons (`_inside`);
#: above it, NumPy's per-call cost is spread over enough values to be the cheaper
SMALL_ROWS = 8


@dataclass
class Quality:
    """Data-quality findings of one batch: counts per column."""

    unseen_categories: dict[str, int] = field(default_factory=dict)
    out_of_range: dict[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.unseen_categories or self.out_of_range)


@dataclass(frozen=True)
class Policy:
    reject_unseen_categories: bool = False
    reject_out_of_range: bool = False


class Validated(NamedTuple):
    """Rows that passed. `numbers`: the number and integer columns as one float64 matrix
    (rows x columns, signature order, NaN for null); `others`: the boolean and string columns'
    values; `columns`: every column's validated values in signature order (what the log
    keeps)."""

    n: int
    numbers: np.ndarray
    others: dict[str, list[Any]]
    columns: Sequence[Sequence[Any]]
    keys: list[Any] | None
    quality: Quality | None
    #: each row's values as a tuple in signature order (`columns` transposed): a micro-batch's
    #: log entry joins its requests' rows in one C call
    rows: list[tuple[Any, ...]]
    #: every column numeric and every value a float: `numbers` says all `columns` say (the
    #: log then leaves the features to the number block)
    floats: bool = False


def take_rows(validated: Validated, idx: np.ndarray) -> Validated:
    """The validated rows at positions `idx`, in that order."""
    picks = idx.tolist()
    keys = None if validated.keys is None else [validated.keys[i] for i in picks]
    return Validated(
        len(picks),
        validated.numbers[idx],
        {name: [col[i] for i in picks] for name, col in validated.others.items()},
        [[column[i] for i in picks] for column in validated.columns],
        keys,
        validated.quality,
        [validated.rows[i] for i in picks],
        validated.floats,
    )


class Plan:
    """What validating against one signature needs, computed once per loaded model."""

    def __init__(self, signature: Signature) -> None:
        self.signature = signature
        self.specs = signature.columns
        self.names = [c.name for c in self.specs]
        self.known = frozenset(self.names)
        #: a row's values in signature order, as a tuple, read in C (KeyError: one missing)
        self.values = _getter(self.names)
        positions = range(len(self.specs))
        self.num_idx = [j for j in positions if self.specs[j].kind in ("number", "integer")]
        self.num_names = [self.names[j] for j in self.num_idx]
        self.num_tuple = tuple(self.num_names)
        self.num_values = _getter(self.num_names)
        self.all_numeric = len(self.num_idx) == len(self.specs)
        num_specs = [self.specs[j] for j in self.num_idx]
        self.num_types = _NUMBERS | {_NONE} if any(s.nullable for s in num_specs) else _NUMBERS
        self.nonnull_pos = np.flatnonzero([not s.nullable for s in num_specs])
        self.int_pos = np.flatnonzero([s.kind == "integer" for s in num_specs])
        self.int_idx = [j for j in self.num_idx if self.specs[j].kind == "integer"]
        self.lo = np.array([np.nan if s.min is None else s.min for s in num_specs], np.float64)
        self.hi = np.array([np.nan if s.max is None else s.max for s in num_specs], np.float64)
        self.has_range = bool(np.isfinite(self.lo).any() or np.isfinite(self.hi).any())
        #: per numeric column, the bounds every value of a clean row is within (`_inside`)
        self.lo_list = [_low(s) for s in num_specs]
        self.hi_list = [_high(s) for s in num_specs]
        # NaN bounds compare False: a column without a range never counts as outside
        self.others = [
            (j, self.names[j], _ALLOWED[s.kind] | ({_NONE} if s.nullable else set()))
            for j, s in enumerate(self.specs)
            if s.kind in _ALLOWED
        ]
        self.categories = [
            (j, s.name, s.category_set)
            for j, s in enumerate(self.specs)
            if s.kind == "string" and s.categories is not None
        ]


def _low(spec: ColumnSpec) -> float:
    low = -_MAX if spec.min is None else float(spec.min)
    return max(low, -_INT64) if spec.kind == "integer" else low


def _high(spec: ColumnSpec) -> float:
    high = _MAX if spec.max is None else float(spec.max)
    # an integer column's clean values stay below 2**63 (as float64s: see `_INT64`)
    return min(high, float(np.nextafter(_INT64, 0))) if spec.kind == "integer" else high


def _getter(names: list[str]) -> Callable[[Any], tuple[Any, ...]]:
    if len(names) == 1:
        name = names[0]
        return lambda row: (row[name],)
    if not names:
        return lambda row: ()
    return itemgetter(*names)


def plan_of(signature: Signature | Plan) -> Plan:
    return signature if isinstance(signature, Plan) else Plan(signature)


def validate_rows(
    rows: Any,
    signature: Signature | Plan,
    key_column: str | None = None,
    policy: Policy = Policy(),
) -> Validated:
    """Check `rows` (a list of JSON objects) against the signature; raise InvalidInputError
    listing every problem (up to MAX_PROBLEMS) with its row and column."""
    plan = plan_of(signature)
    if type(rows) is not list or not rows:
        diagnosis.envelope(rows)
    try:
        # each row's values as a tuple, read in C; the columns are their transpose
        values = list(map(plan.values, rows))
    except (KeyError, TypeError):
        # a missing column or a row that is not an object
        checked = None
    else:
        columns: Sequence[Sequence[Any]] = list(zip(*values, strict=True)) if plan.names else []
        # every column numeric: the tuples are the matrix's rows already
        whole = values if plan.all_numeric and plan.names else None
        checked = _check(rows, columns, plan, key_column, policy, whole, values)
    if checked is None:  # a type, null, whole-number or key problem somewhere: find them all
        columns = diagnosis.diagnose(rows, plan, key_column, policy)
        # (the corrected values, row by row: only numeric text comes this way and passes)
        tuples = list(zip(*columns, strict=True)) if plan.names else [()] * len(rows)
        checked = _check(rows, columns, plan, key_column, policy, None, tuples, corrected=True)
        if checked is None:  # pragma: no cover - diagnose accepted what the fast path refuses
            raise InvalidInputError("invalid instances", [Problem("cannot validate the rows")])
    return checked


def _check(
    rows: list[dict[str, Any]],
    columns: Sequence[Sequence[Any]],
    plan: Plan,
    key_column: str | None,
    policy: Policy,
    values: list[tuple[Any, ...]] | None,
    tuples: list[tuple[Any, ...]],
    corrected: bool = False,
) -> Validated | None:
    """The fast path over all values at once; None when something must be diagnosed.
    `values`: the rows' tuples when every column is numeric (the matrix is made from them);
    `tuples`: the rows' tuples whatever the columns (`Validated.rows`); `corrected`: the
    columns are diagnosis's (numeric text made numbers), not the rows' own values."""
    n = len(rows)
    numeric = values if values is not None else [columns[j] for j in plan.num_idx]
    types = set(map(type, chain.from_iterable(numeric)))
    if not types <= plan.num_types:
        return None
    try:
        # one C loop over every numeric value, rows x columns
        if values is not None:
            matrix = np.array(values, dtype=np.float64).reshape(n, len(plan.num_idx))
        elif len(plan.num_idx) == len(columns) or corrected:
            matrix = np.array(numeric, dtype=np.float64).reshape(len(numeric), n).T
        else:
            matrix = np.array(list(map(plan.num_values, rows)), dtype=np.float64)
            matrix = matrix.reshape(n, len(plan.num_idx))
    except (OverflowError, ValueError, TypeError):
        return None
    # most requests are a row or a few of clean numbers: one pass of C comparisons says so
    # (and that there is nothing to find), where NumPy's calls cost microseconds each
    clean = values is not None and n <= SMALL_ROWS and _NONE not in types
    clean = clean and _inside(values, plan)  # type: ignore[arg-type]
    if not clean and (float in types or _NONE in types):  # only these can be non-finite
        finite = np.isfinite(matrix)
        if not finite.all():
            if _NONE not in types or np.isinf(matrix).any():  # a JSON number too large
                return None
            if plan.nonnull_pos.size and not finite[:, plan.nonnull_pos].all():
                return None  # a null where the reference had none
    if plan.int_idx:
        part = matrix[:, plan.int_pos]
        # beyond int64 the model would get another number (the cast wraps): diagnosed (a
        # clean row's values are within it: `_high`, `_low`; a value at -2**63 may be a
        # smaller int rounded, which diagnosis tells apart)
        if not (clean or corrected) and ((part >= _INT64) | (part <= -_INT64)).any():
            return None
        if float in types:
            ints = set(map(type, chain.from_iterable(columns[j] for j in plan.int_idx)))
            # 42.0 is a whole number, 42.5 is not
            if float in ints and not ((part == np.trunc(part)) | np.isnan(part)).all():
                return None
    others: dict[str, list[Any]] = {}
    keys = None
    for j, name, allowed in plan.others:
        column = columns[j]
        if not set(map(type, column)) <= allowed:
            return None
        others[name] = column if type(column) is list else list(column)
    if key_column is not None:
        keys = [r.get(key_column) for r in rows]
        key_types = set(map(type, keys))
        if not key_types <= _KEY_TYPES:
            return None
        if str in key_types and any(
            type(k) is str and (len(k) > MAX_KEY_LENGTH or "\x00" in k) for k in keys
        ):
            return None
    quality = None if clean else findings(matrix, others, plan, policy)
    floats = plan.all_numeric and bool(plan.names) and types == _FLOAT_ONLY
    return Validated(n, matrix, others, columns, keys, quality, tuples, floats)


def _inside(values: list[tuple[Any, ...]], plan: Plan) -> bool:
    """Whether every value of these all-numeric rows is finite and within its column's
    reference range: lo <= v <= hi is false for NaN, and +-inf is beyond every finite bound."""
    lo, hi = plan.lo_list, plan.hi_list
    return all(all(map(le, lo, row)) and all(map(le, row, hi)) for row in values)


def findings(
    matrix: np.ndarray,
    others: dict[str, Any],
    plan: Plan,
    policy: Policy,
) -> Quality | None:
    """Ranges over the matrix, categories by set difference; the rows only when rejecting."""
    quality: Quality | None = None
    problems: list[Problem] = []
    if plan.has_range:
        outside = (matrix < plan.lo) | (matrix > plan.hi)
        if outside.any():
            counts = outside.sum(axis=0)
            if policy.reject_out_of_range:
                for i, p in zip(*np.nonzero(outside), strict=True):
                    if len(problems) >= MAX_PROBLEMS:
                        break
                    spec = plan.specs[plan.num_idx[p]]
                    message = diagnosis.outside_range(float(matrix[i, p]), spec)
                    problems.append(Problem(message, row=int(i), column=spec.name))
            else:
                quality = Quality()
                for p in np.flatnonzero(counts).tolist():
                    quality.out_of_range[plan.num_names[p]] = int(counts[p])
    for _j, name, categories in plan.categories:
        column = others[name]
        listed = type(column) is list
        if listed:
            unseen = set(column).difference(categories)
            unseen.discard(None)
        else:  # a file's text column (a pandas array): its distinct values found in C
            unseen = {v for v in column.unique() if type(v) is str}.difference(categories)
        if not unseen:
            continue
        if policy.reject_unseen_categories:
            for i, v in enumerate(column):
                if len(problems) >= MAX_PROBLEMS:
                    break
                if v in unseen:
                    problems.append(Problem(diagnosis.unseen_category(v), row=i, column=name))
        else:
            quality = quality or Quality()
            quality.unseen_categories[name] = (
                sum(1 for v in column if v in unseen)
                if listed
                else int(column.isin(list(unseen)).sum())
            )
    if problems:
        raise diagnosis.rejected(diagnosis.in_order(problems, plan.names))
    return quality


__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_PROBLEMS",
    "Plan",
    "Policy",
    "Quality",
    "Validated",
    "findings",
    "plan_of",
    "type_name",
    "validate_rows",
]
