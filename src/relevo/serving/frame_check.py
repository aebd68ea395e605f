"""Validating a chunk of a file (a DataFrame) against a model's signature, column by column.

The same rules as the JSON API (`relevo.serving.coercion` decides what a column accepts, the
same data-quality findings and problem wording), done with NumPy over whole columns: batch
scoring never walks rows in Python unless a column has a problem to report.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from relevo.errors import InvalidInputError, Problem
from relevo.serving.coercion import ColumnProblems, convert_array
from relevo.serving.diagnosis import MAX_KEY_LENGTH, MAX_PROBLEMS
from relevo.serving.frames import Part
from relevo.serving.validation import Plan, Policy, Quality, findings

_NULL = "null is not allowed: the reference data had no missing values here"


class Tally:
    """How many problems checks found in all, where the list they fill stops at MAX_PROBLEMS
    (and a column names only its first bad cells): one per bad cell; a column missing from the
    file, or of the wrong type throughout, is one problem."""

    def __init__(self) -> None:
        self.count = 0


class _Report:
    """A chunk's problems into the caller's list (rows counted from `offset`), each counted."""

    def __init__(self, problems: list[Problem], offset: int) -> None:
        self.problems = problems
        self.offset = offset
        self.count = 0

    def __call__(self, message: str, row: int | None, column: str) -> None:
        self.count += 1
        if len(self.problems) < MAX_PROBLEMS:
            at = None if row is None else row + self.offset
            self.problems.append(Problem(message, at, column))

    def unnamed(self, count: int) -> None:
        """Problems found beyond those named."""
        self.count += count


class CheckedChunk(NamedTuple):
    """A chunk that passed: the model's input, keys, findings and its columns for the log."""

    part: Part
    keys: list[Any] | None
    quality: Quality | None


def check_frame(
    frame: pd.DataFrame,
    plan: Plan,
    key_column: str | None,
    policy: Policy,
    offset: int,
    problems: list[Problem],
    tally: Tally | None = None,
) -> CheckedChunk | None:
    """Validate `frame` (rows `offset`... of the file); problems go to `problems` (at most
    MAX_PROBLEMS in all) and are counted in `tally`, and None is returned when this chunk has
    any."""
    report = _Report(problems, offset)
    try:
        return _check(frame, plan, key_column, policy, report)
    finally:
        if tally is not None:
            tally.count += report.count


def _separator_hint(columns: pd.Index) -> str:
    """Why the columns may be missing when the whole header reads as one column: a file
    separated by another character than the comma (a spreadsheet's export in many locales
    uses `;`)."""
    if len(columns) != 1:
        return ""
    header = str(columns[0])
    for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
        if sep in header:
            return (
                f" (its header reads as one column, {header[:60]!r}: separated by {name}? "
                "relevo reads comma-separated CSV files)"
            )
    return ""


def _check(
    frame: pd.DataFrame, plan: Plan, key_column: str | None, policy: Policy, report: _Report
) -> CheckedChunk | None:
    n = len(frame)

    numbers = np.empty((n, len(plan.num_idx)), dtype=np.float64)
    others: dict[str, Any] = {}
    missing = False
    absent = f"required column is missing from the file{_separator_hint(frame.columns)}"
    for j, spec in enumerate(plan.specs):
        if spec.name not in frame.columns:
            missing = True
            if report.offset == 0:  # once per file, not once per chunk
                report(absent, None, spec.name)
            continue
        column = frame[spec.name]
        converted: Any
        if spec.kind == "string" and _text(column.dtype):
            # what pandas reads from a CSV or Parquet text column: every cell is a str or
            # missing (NaN, as in a DataFrame of objects), so there is nothing to convert or
            # check cell by cell; the model gets the column as read
            converted = column.array
            null: np.ndarray | None = converted.isna()
        else:
            converted = _convert(column.to_numpy(), spec.kind, spec.name, n, report)
            if converted is None:
                continue
            null = _nulls(converted)
        if null is not None and not spec.nullable and null.any():
            rows = np.flatnonzero(null)
            for row in rows[:MAX_PROBLEMS].tolist():
                report(_NULL, row, spec.name)
            report.unnamed(max(rows.size - MAX_PROBLEMS, 0))
            continue
        if spec.kind in ("number", "integer"):
            numbers[:, plan.num_idx.index(j)] = converted
        else:
            others[spec.name] = converted.tolist() if type(converted) is np.ndarray else converted
    keys = _keys(frame, key_column, report)
    if report.count or missing:  # a later chunk's missing column: reported with the first
        return None
    try:
        quality = findings(numbers, others, plan, policy)
    except InvalidInputError as exc:  # findings the settings make errors
        for p in exc.problems:
            report(p.message, p.row, p.column or "")
        report.unnamed(exc.total - len(exc.problems))
        return None
    return CheckedChunk((numbers, others), keys, quality)


def _text(dtype: Any) -> bool:
    """Whether a column of this dtype holds only str and NaN (pandas 3's default for text)."""
    return isinstance(dtype, pd.StringDtype) and isinstance(getattr(dtype, "na_value", 0), float)


def _convert(values: np.ndarray, kind: str, name: str, n: int, report: _Report) -> Any:
    """A column's cells as its kind (`convert_array`); None once its problems are reported."""
    missing = pd.isna(values) if values.dtype.kind == "O" else None
    if values.dtype.kind == "b" and kind in ("number", "integer"):
        report(f"expected a number, got a boolean ({n} rows)", None, name)
        return None
    if missing is not None and missing.any():
        values = values.copy()
        values[missing] = None
    try:
        return convert_array(values, kind)
    except ColumnProblems as bad:
        for row, message in bad.items:
            report(message, row, name)
        report.unnamed(bad.count - len(bad.items))
        return None


def _nulls(converted: np.ndarray) -> np.ndarray | None:
    if converted.dtype.kind == "f":
        return np.isnan(converted)
    if converted.dtype.kind == "O":
        return pd.isna(converted)
    return None


def integral_keys(column: pd.Series) -> pd.Series:
    """Text keys as a JSON client sends them: `17.0` is the customer 17 (pandas writes an
    integer key column with gaps so), as a float key 17.0 is; any other text is kept."""
    if not (_text(column.dtype) or column.dtype == object):
        return column
    floaty = column.str.fullmatch(r"-?\d+\.0+", na=False).astype(bool)
    if not floaty.any():
        return column
    return column.where(~floaty, column.str.replace(r"\.0+$", "", regex=True))


def _keys(frame: pd.DataFrame, key_column: str | None, report: _Report) -> list[Any] | None:
    if key_column is None or key_column not in frame.columns:
        return None
    column = frame[key_column]
    if pd.api.types.is_integer_dtype(column.dtype):
        # a nullable integer column's gap (pd.NA) is a missing key, None as in JSON
        return column.to_numpy(object, na_value=None).tolist()
    if _text(column.dtype):  # str or NaN: only the lengths and NUL characters to check
        column = integral_keys(column)
        bad = (column.str.len() > MAX_KEY_LENGTH) | column.str.contains("\x00", regex=False)
        if not bad.any():
            return column.to_numpy(object, na_value=None).tolist()
    keys = [None if k is None or (type(k) is float and k != k) else k for k in column.tolist()]
    for i, k in enumerate(keys):
        if k is None:
            continue
        if type(k) is float and k.is_integer():
            keys[i] = int(k)  # an integer key column with gaps is read as floats
        elif type(k) is not str or len(k) > MAX_KEY_LENGTH or "\x00" in k:
            report(
                "the routing key must be a string or integer of at most "
                f"{MAX_KEY_LENGTH} characters",
                i,
                key_column,
            )
    return keys
