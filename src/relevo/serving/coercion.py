"""What a model's column accepts, decided once for every door (JSON API, V2, batch scoring).

The rules, per column kind (docs/serving.md "What a column accepts"):

- number: JSON numbers; numeric text (`"1050"`, `" 1.5e3 "`: text Python's `float()` reads
  as a finite number; pydantic's lax rule). Booleans are not numbers, and an infinity (a
  file's `inf`, a float tensor's) is "not a finite number".
- integer: as number, and the value must be whole (`42.0` and `"42"` are fine, `42.5` is not).
- boolean: true or false (V2 and files also give 0/1 and the words true/false, yes/no, t/f).
- string: text (V2 numbers and booleans given for a string column are taken as their text).
- missing: null (JSON), text that means no value (`MISSING_TEXT`: `""`, `NA`, `nan`...) in a
  number or integer column at every door (and a boolean column in V2 and files), an empty or NA
  cell of a CSV, V2 floats' NaN. A missing value is allowed only where the reference data had
  missing values.

Anything else is a 422 naming row and column. Pure: no transport, no FastAPI.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

KINDS: tuple[str, ...] = ("number", "integer", "boolean", "string")
#: text that means "no value" in a file or a BYTES cell (pandas' common NA markers)
MISSING_TEXT = frozenset({"", "nan", "NaN", "NAN", "NA", "N/A", "n/a", "NULL", "null", "None"})
#: 1.0 and 0.0 too: pandas writes a 0/1 column with gaps as floats
TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1", "1.0"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "0.0"})
#: problems reported per column by the array conversions (the request lists at most 100)
MAX_PER_COLUMN = 20

EXPECTED = {
    "number": "a number",
    "integer": "a number",
    "boolean": "true or false",
    "string": "a string",
}
_TYPE_NAMES = {
    int: "a number",
    float: "a number",
    str: "a string",
    bool: "a boolean",
    dict: "an object",
    list: "an array",
    type(None): "null",
}


class ColumnProblems(Exception):
    """Cells of one column that the column does not accept: (row or None, message) pairs, at
    most MAX_PER_COLUMN of them, and `count`, how many cells there were in all."""

    def __init__(self, items: list[tuple[int | None, str]], count: int = 0) -> None:
        super().__init__(items[0][1] if items else "")
        self.items = items
        self.count = max(count, len(items))


def type_name(value: Any) -> str:
    """How a value's type is called in error messages ("a string", "an object")."""
    return _TYPE_NAMES.get(type(value), type(value).__name__)


_NOT = object()
#: an infinity where a number is expected (a file's `inf`, a float tensor's), as the API says
NOT_FINITE = "not a finite number"
#: an integer column's values feed the model through int64 (after a float64 matrix): a whole
#: number must lie in [-2**63, 2**63), compared as a float64 (2**63 - 1 is 2**63 as one)
TOO_LARGE = "too large for a 64-bit integer"
#: the smallest integer that is 2**63 as a float64 (every one from it on is too large)
ROUNDS_TO_2_63 = 2**63 - 512


def fits_int64(value: float) -> bool:
    """Whether a whole number fits an integer column (see TOO_LARGE)."""
    try:
        number = float(value)
    except OverflowError:  # an int beyond every float
        return False
    # (an int compares exactly: -2**63 - 1 is -2**63 as a float, and below the range)
    return value >= -(2**63) and number < 2.0**63


def parse_text(text: str, kind: str) -> Any:
    """A text cell for a number, integer or boolean column: its value, None when the text
    means missing, or `NOT_ACCEPTED` when the column does not accept it."""
    text = text.strip()
    if text in MISSING_TEXT:
        return None
    if kind == "boolean":
        low = text.lower()
        if low in TRUE_WORDS:
            return True
        if low in FALSE_WORDS:
            return False
        return _NOT
    try:
        number = float(text)
    except ValueError:
        return _NOT
    if not math.isfinite(number):
        return _NOT
    if kind == "number":
        return number
    try:
        whole = int(text)
    except ValueError:
        if number != math.trunc(number):
            return _NOT
        whole = int(number)
    return whole if fits_int64(whole) else _NOT


NOT_ACCEPTED = _NOT


def coerce_value(value: Any, kind: str) -> tuple[Any, str | None]:
    """One JSON value for a column of `kind`: (accepted value, None) or (None, message).

    Used on the failure path of validation (the fast path checks types over the whole batch)
    and for numeric text, which the JSON API accepts as a number (one rule with files)."""
    t = type(value)
    if kind in ("number", "integer"):
        if t is int or t is float:
            if kind == "integer":
                if t is float and not value.is_integer():
                    return None, f"expected a whole number, got {value}"
                if not fits_int64(value):
                    return None, f"{TOO_LARGE}, got {shown_number(value)}"
            return value, None
        if t is str:
            parsed = parse_text(value, kind)
            if parsed is None:
                return None, None  # missing: the null rule decides
            if parsed is not _NOT:
                return parsed, None
            number = parse_text(value, "number") if kind == "integer" else _NOT
            if number is not _NOT and number == math.trunc(number):  # whole, but too large
                return None, f"{TOO_LARGE}, got {value[:40]!r}"
            wanted = "a whole number" if number is not _NOT else EXPECTED[kind]
            return None, f"expected {wanted}, got {value[:40]!r}"
    elif kind == "boolean":
        if t is bool:
            return value, None
    elif kind == "string" and t is str:
        return value, None
    return None, f"expected {EXPECTED[kind]}, got {type_name(value)}"


# ------------------------------------------------------------------------ arrays (V2, files)


def convert_array(values: np.ndarray, kind: str) -> np.ndarray:
    """A decoded column (a V2 tensor column, a file's column) as the column's kind.

    number -> float64 (NaN for missing); integer -> int64, or float64 if values are missing;
    boolean -> bool, or object with None if values are missing; string -> object of str.
    Raises ColumnProblems naming the rows the column does not accept.
    """
    if values.dtype.kind in "US":
        values = values.astype(object)
    k = values.dtype.kind
    if kind == "string":
        return _to_strings(values)
    if k == "O":
        return parse_cells(values, kind)
    if kind == "number":  # a boolean tensor is not a number (the JSON API refuses true too)
        if k in "iuf":
            if k == "f":
                _refuse_infinite(values)
            return values.astype(np.float64)
    elif kind == "integer":
        if k in "iu":
            # an int64 near 2**63 is 2**63 as the float64 the model's input is made from, and
            # the model would get -2**63 (`fits_int64`): refused, as the JSON API refuses it
            if values.size and values.max() >= ROUNDS_TO_2_63:
                raise _refused(np.flatnonzero(values >= ROUNDS_TO_2_63), TOO_LARGE)
            return values.astype(np.int64)
        if k == "f":
            _refuse_infinite(values)  # as in a number column: not a finite number
            missing = np.isnan(values)
            finite = values[~missing]
            bad = finite != np.trunc(finite)
            if bad.any():
                rows = np.flatnonzero(~missing)[bad]
                raise _refused(rows, "not an integer")
            # a cast would wrap 1e19 to -2**63: refused, as the text "1e19" is
            huge = (finite >= 2.0**63) | (finite < -(2.0**63))
            if huge.any():
                rows = np.flatnonzero(~missing)[huge]
                raise _refused(rows, TOO_LARGE)
            if missing.any():
                return values.astype(np.float64)
            return values.astype(np.int64)
    elif kind == "boolean":
        if k == "b":
            return values.astype(bool)
        if k in "iuf":
            missing = np.isnan(values) if k == "f" else np.zeros(values.shape, bool)
            bad = ~missing & (values != 0) & (values != 1)
            if bad.any():
                raise _refused(np.flatnonzero(bad), "not a boolean (0 or 1)")
            if missing.any():
                out = np.empty(values.shape, dtype=object)
                out[:] = values != 0
                out[missing] = None
                return out
            return values != 0
    article = _ARTICLE.get(kind, f"a {kind}")
    raise ColumnProblems([(None, f"a {values.dtype} tensor cannot feed {article} column")])


def shown_number(value: float) -> str:
    """A number as an error message shows it (an int of hundreds of digits, shortened)."""
    text = str(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} digits)"


def _refused(rows: np.ndarray, message: str) -> ColumnProblems:
    """The cells `rows` of a column refused for one reason: the first named, all counted."""
    return ColumnProblems([(int(r), message) for r in rows[:MAX_PER_COLUMN]], rows.size)


def _refuse_infinite(values: np.ndarray) -> None:
    """A float column's infinities refused (NaN is a missing value, which the null rule
    decides): no model should see one, and the JSON API refuses them too."""
    infinite = np.isinf(values)
    if infinite.any():
        raise _refused(np.flatnonzero(infinite), NOT_FINITE)


def _to_strings(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind != "O":
        # numbers or booleans given for a string column: their text; NaN is a missing value
        # (as in a V2 float tensor), not the word "nan"
        out = np.empty(values.shape, dtype=object)
        out[:] = values.astype(str).tolist()
        if values.dtype.kind == "f":
            out[np.isnan(values)] = None
        return out
    bad: list[tuple[int | None, str]] = []
    refused = 0
    out = np.empty(values.shape, dtype=object)
    for i, v in enumerate(values.tolist()):
        if isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError:
                refused += 1
                if len(bad) < MAX_PER_COLUMN:
                    bad.append((i, "not valid UTF-8 text"))
                continue
        elif v is not None and not isinstance(v, str):
            v = str(v)
        out[i] = v
    if bad:
        raise ColumnProblems(bad, refused)
    return out


_ARTICLE = {"number": "a number", "integer": "an integer", "boolean": "a boolean"}


def parse_cells(values: np.ndarray, kind: str) -> np.ndarray:
    """Text cells (str or bytes; None or NaN for missing) of a number, integer or boolean
    column, parsed by `parse_text`."""
    if kind == "number":
        try:  # fast path: NumPy calls float() per cell in C
            fast = values.astype(np.float64)
        except (ValueError, TypeError):
            pass
        else:
            if not np.isinf(fast).any():
                return fast
    items = values.tolist()
    bad: list[tuple[int | None, str]] = []
    refused = 0
    parsed: list[Any] = []
    missing = False
    for i, v in enumerate(items):
        if v is None or (type(v) is float and v != v):
            parsed.append(None)
            missing = True
            continue
        if type(v) is float and kind != "boolean" and not math.isfinite(v):
            refused += 1
            if len(bad) < MAX_PER_COLUMN:
                bad.append((i, NOT_FINITE))
            parsed.append(None)
            continue
        if type(v) in (int, float) and kind != "boolean" and type(v) is not bool:
            value: Any = v if kind == "number" or float(v).is_integer() else _NOT
            if value is not _NOT and kind == "integer":
                if not fits_int64(v):
                    refused += 1
                    if len(bad) < MAX_PER_COLUMN:
                        bad.append((i, TOO_LARGE))
                    parsed.append(None)
                    continue
                value = int(v)
        else:
            text = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
            value = parse_text(text, kind)
        if value is None:
            parsed.append(None)
            missing = True
            continue
        if value is _NOT:
            refused += 1
            if len(bad) < MAX_PER_COLUMN:
                shown = v if not isinstance(v, (str, bytes)) else str(v)[:40]
                bad.append((i, f"cannot parse {shown!r} as {_ARTICLE[kind]}"))
            parsed.append(None)
            continue
        parsed.append(value)
    if bad:
        raise ColumnProblems(bad, refused)
    if kind == "number":
        return np.array([np.nan if p is None else p for p in parsed], dtype=np.float64)
    if kind == "integer":
        if missing:
            return np.array([np.nan if p is None else p for p in parsed], dtype=np.float64)
        return np.array(parsed, dtype=np.int64)
    if missing:
        out = np.empty(len(parsed), dtype=object)
        out[:] = parsed
        return out
    return np.array(parsed, dtype=bool)
