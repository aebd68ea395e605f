"""Every problem of rows that failed validation's fast path, with its row and column.

Only the failure path comes here, so the per-cell work is paid by bad requests alone, and it is
bounded: it stops at MAX_PROBLEMS problems (no work per row past it) and makes at most
MAX_HINTS typo hints (difflib) per request, whatever the number of rows or keys. It also applies
the coercion rules (numeric text is a number): rows whose only "problem" was numeric text come
back as corrected columns.
"""

from __future__ import annotations

import difflib
import math
from typing import TYPE_CHECKING, Any, NoReturn

from relevo.errors import InvalidInputError, Problem
from relevo.serving.coercion import (
    TOO_LARGE,
    coerce_value,
    fits_int64,
    shown_number,
    type_name,
)

if TYPE_CHECKING:
    from relevo.registry.signature import ColumnSpec
    from relevo.serving.validation import Plan, Policy

MAX_PROBLEMS = 100
MAX_KEY_LENGTH = 200
#: difflib runs at most this many times per request (it is slow on rows with many keys)
MAX_HINTS = 3
_NULL = "null is not allowed: the reference data had no missing values here"
_MISSING = object()
_DIRECT: dict[str, tuple[type, ...]] = {
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "string": (str,),
}


class _Problems:
    def __init__(self) -> None:
        self.items: list[Problem] = []
        self.hints_left = MAX_HINTS

    @property
    def full(self) -> bool:
        return len(self.items) >= MAX_PROBLEMS

    def add(self, message: str, row: int | None = None, column: str | None = None) -> None:
        if not self.full:
            self.items.append(Problem(message, row, column))

    def hint(self, row: dict[Any, Any], name: str, known: frozenset[str]) -> str:
        """ " (the row has 'x': a typo?)" for a column the row seems to misspell."""
        if self.hints_left <= 0:
            return ""
        self.hints_left -= 1
        unknown = [k for k in row if isinstance(k, str) and k not in known]
        close = difflib.get_close_matches(name, unknown, n=1, cutoff=0.75)
        return f" (the row has {close[0]!r}: a typo?)" if close else ""


def envelope(rows: Any) -> NoReturn:
    """Raise the error of an `instances` value that is not a non-empty list."""
    if not isinstance(rows, list):
        raise InvalidInputError(
            "'instances' must be a list of objects",
            [Problem("expected a list of objects", column="instances")],
        )
    raise InvalidInputError(
        "'instances' is empty: send at least one row",
        [Problem("empty list", column="instances")],
    )


def rejected(problems: list[Problem]) -> InvalidInputError:
    """The 422 for `problems`; at MAX_PROBLEMS the search stopped, so there may be more."""
    if len(problems) >= MAX_PROBLEMS:
        message = f"at least {MAX_PROBLEMS} problems in the instances (the first are listed)"
    else:
        message = f"{len(problems)} problem(s) in the instances"
    return InvalidInputError(message, problems[:MAX_PROBLEMS], len(problems))


def in_order(problems: list[Problem], names: list[str]) -> list[Problem]:
    """`problems` column by column (signature order), each column's in row order."""
    order = {name: j for j, name in enumerate(names)}
    return sorted(
        problems,
        key=lambda p: (order.get(p.column or "", len(order)), -1 if p.row is None else p.row),
    )


def outside_range(value: float, spec: ColumnSpec) -> str:
    """The problem of a number a setting refuses for being outside the reference range."""
    return f"{value:g} is outside the reference range [{spec.min}, {spec.max}]"


def unseen_category(value: str) -> str:
    """The problem of a category a setting refuses for never having been seen."""
    return f"category {value!r} was never seen in the reference data"


def diagnose(rows: Any, plan: Plan, key_column: str | None, policy: Policy) -> list[list[Any]]:
    """Raise InvalidInputError listing the problems of `rows`, or return their columns
    (signature order) with numeric text turned into numbers when that was all."""
    if not isinstance(rows, list) or not rows:
        envelope(rows)
    problems = _Problems()
    for i, r in enumerate(rows):
        if type(r) is not dict:
            problems.add(f"expected an object, got {type_name(r)}", row=i)
            if problems.full:
                break
    if problems.items:
        raise rejected(problems.items)
    fixes: list[tuple[int, int, Any]] = []
    known = plan.known | ({key_column} if key_column else set())
    for j, spec in enumerate(plan.specs):
        if problems.full:
            break
        _column(rows, j, spec.name, spec.kind, spec.nullable, known, problems, fixes)
        if not problems.full:
            _refused_findings(rows, spec, policy, problems)
    if key_column is not None and not problems.full:
        _keys(rows, key_column, problems)
    if problems.items:
        # a column's refused findings among its other problems
        raise rejected(in_order(problems.items, plan.names))
    columns = [[r[c] for r in rows] for c in plan.names]
    for i, j, value in fixes:
        columns[j][i] = value
    return columns


def _column(
    rows: list[dict[str, Any]],
    j: int,
    name: str,
    kind: str,
    nullable: bool,
    known: frozenset[str],
    problems: _Problems,
    fixes: list[tuple[int, int, Any]],
) -> None:
    if len(rows) > 1 and all(name not in r for r in rows):
        # one problem for a column absent from every row, not one per row
        hint = problems.hint(rows[0], name, known)
        problems.add(f"required column is missing from every row{hint}", column=name)
        return
    direct = _DIRECT[kind]
    hinted: str | None = None
    for i, r in enumerate(rows):
        if problems.full:
            return
        v = r.get(name, _MISSING)
        if v is _MISSING:
            if hinted is None:
                hinted = problems.hint(r, name, known)
            # the same misspelling in later rows: reuse the hint when the row has that key
            hint = hinted if hinted and hinted.split("'")[1] in r else ""
            problems.add(f"required column is missing{hint}", row=i, column=name)
            continue
        t = type(v)
        if t in direct:
            if kind == "integer":  # an int: the model gets it as a 64-bit one
                if not fits_int64(v):
                    problems.add(f"{TOO_LARGE}, got {shown_number(v)}", row=i, column=name)
                continue
            if (t is not float and t is not int) or _finite(v):
                continue
            problems.add("not a finite number", row=i, column=name)
            continue
        if v is None:
            if not nullable:
                problems.add(_NULL, row=i, column=name)
            continue
        value, message = coerce_value(v, kind)
        if message is not None:
            problems.add(message, row=i, column=name)
        elif value is None:  # text that means missing
            if not nullable:
                problems.add(_NULL, row=i, column=name)
            else:
                fixes.append((i, j, None))
        elif value is not v:
            fixes.append((i, j, value))


def _refused_findings(
    rows: list[dict[str, Any]], spec: ColumnSpec, policy: Policy, problems: _Problems
) -> None:
    """The values of one column that the settings refuse though their type is right (out of
    the reference range, a category never seen), so that one 422 lists them beside the type
    problems; the same words as `validation.findings`, which finds them on clean rows."""
    if spec.kind in ("number", "integer") and policy.reject_out_of_range:
        if spec.min is None and spec.max is None:
            return
        lo = -math.inf if spec.min is None else spec.min
        hi = math.inf if spec.max is None else spec.max
        for i, r in enumerate(rows):
            v: Any = r.get(spec.name)
            if v is None or type(v) is bool:
                continue
            v, message = coerce_value(v, spec.kind)
            if message is not None:  # a type problem, said once (by `_column`)
                continue
            if type(v) not in (int, float) or not _finite(v) or lo <= v <= hi:
                continue
            if problems.full:
                return
            problems.add(outside_range(float(v), spec), row=i, column=spec.name)
    elif spec.kind == "string" and policy.reject_unseen_categories:
        if spec.categories is None:
            return
        seen = spec.category_set
        for i, r in enumerate(rows):
            v = r.get(spec.name)
            if type(v) is str and v not in seen:
                if problems.full:
                    return
                problems.add(unseen_category(v), row=i, column=spec.name)


def _finite(v: float) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer too large for a float
        return False


def _keys(rows: list[dict[str, Any]], key_column: str, problems: _Problems) -> None:
    # the key is optional: a row without one is answered and routed at random
    for i, r in enumerate(rows):
        if problems.full:
            return
        k = r.get(key_column)
        if type(k) is str and (len(k) > MAX_KEY_LENGTH or "\x00" in k):
            problems.add(
                f"the routing key must be at most {MAX_KEY_LENGTH} characters "
                "without NUL characters",
                row=i,
                column=key_column,
            )
        elif type(k) is float:
            problems.add(_float_key(k), row=i, column=key_column)
        elif k is not None and type(k) not in (str, int):
            problems.add(
                f"the routing key must be a string or integer, got {type_name(k)}",
                row=i,
                column=key_column,
            )


def _float_key(k: float) -> str:
    """Why a JSON number that parsed as a float is no routing key, and what to send instead."""
    if math.isfinite(k) and k.is_integer():
        if abs(k) < 2**53:  # below 2**53 the float holds the whole number the client wrote
            return (
                f"the routing key must be a string or integer, got {shown_number(k)} (a number "
                f'with a decimal point or an exponent): send {int(k)} or "{int(k)}"'
            )
        # JSON parsing keeps an integer beyond 64 bits only as a float: its digits are lost
        return (
            f"the routing key must be a string or integer, got {shown_number(k)}, a number "
            "whose digits were not kept (an integer beyond 64 bits, or written with a decimal "
            "point or an exponent): send the key as a string"
        )
    return f"the routing key must be a string or integer, got the number {shown_number(k)}"
