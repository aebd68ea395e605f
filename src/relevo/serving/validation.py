"""Validating request rows against a model's signature, column by column, not row by row.

Errors (422): a row that is not an object, a missing column, a wrong type, a null where the
reference had none. Findings (answered, counted as data quality): a category the reference never
showed, a number outside the reference's range; either can be made an error by settings.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from relevo.errors import InvalidInputError, Problem
from relevo.registry.signature import ColumnSpec, Signature

_MISSING = object()
_NUMBER_TYPES = frozenset({int, float})
_NONE = frozenset({type(None)})
_ALLOWED: dict[str, frozenset[type]] = {
    "number": _NUMBER_TYPES,
    "integer": _NUMBER_TYPES,
    "boolean": frozenset({bool}),
    "string": frozenset({str}),
}
_EXPECTED = {
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
MAX_PROBLEMS = 100
#: the store keeps routing keys of up to this many characters
MAX_KEY_LENGTH = 200


@dataclass
class Quality:
    """Data-quality findings of one batch: counts per column."""

    unseen_categories: dict[str, int] = field(default_factory=dict)
    out_of_range: dict[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.unseen_categories or self.out_of_range)


@dataclass
class Validated:
    """Rows that passed: their values column by column (Python lists), keys and findings."""

    n: int
    columns: dict[str, list[Any]]
    keys: list[Any] | None
    quality: Quality


@dataclass(frozen=True)
class Policy:
    reject_unseen_categories: bool = False
    reject_out_of_range: bool = False


def validate_rows(
    rows: Any, signature: Signature, key_column: str | None = None, policy: Policy = Policy()
) -> Validated:
    """Check `rows` (a list of JSON objects) against `signature`; raise InvalidInputError listing
    every problem with its row and column."""
    if not isinstance(rows, list):
        raise InvalidInputError(
            "'instances' must be a list of objects",
            [Problem("expected a list of objects", column="instances")],
        )
    if not rows:
        raise InvalidInputError(
            "'instances' is empty: send at least one row",
            [Problem("empty list", column="instances")],
        )
    problems: list[Problem] = []
    if any(type(r) is not dict for r in rows):
        for i, r in enumerate(rows):
            if type(r) is not dict:
                problems.append(Problem(f"expected an object, got {_name(r)}", row=i))
        raise InvalidInputError("invalid instances", problems[:MAX_PROBLEMS])
    columns: dict[str, list[Any]] = {}
    quality = Quality()
    known = set(signature.names)
    if key_column is not None:
        known.add(key_column)
    for spec in signature.columns:
        values = _column(rows, spec.name, problems, known)
        if values is None:
            continue
        _check(values, spec, problems, quality, policy)
        columns[spec.name] = values
    keys = None
    if key_column is not None:
        # the key is optional: a row without one is answered and routed at random
        keys = [r.get(key_column) for r in rows]
        for i, k in enumerate(keys):
            if type(k) is str and (len(k) > MAX_KEY_LENGTH or "\x00" in k):
                problems.append(
                    Problem(
                        f"the routing key must be at most {MAX_KEY_LENGTH} characters "
                        "without NUL characters",
                        row=i,
                        column=key_column,
                    )
                )
            elif k is not None and type(k) not in (str, int):
                problems.append(
                    Problem(
                        f"the routing key must be a string or integer, got {_name(k)}",
                        row=i,
                        column=key_column,
                    )
                )
    if problems:
        raise InvalidInputError(
            f"{len(problems)} problem(s) in the instances", problems[:MAX_PROBLEMS], len(problems)
        )
    return Validated(len(rows), columns, keys, quality)


def _column(
    rows: list[dict[str, Any]], name: str, problems: list[Problem], known: set[str]
) -> list[Any] | None:
    try:
        return [r[name] for r in rows]
    except KeyError:
        missing = [i for i, r in enumerate(rows) if name not in r]
        if len(missing) == len(rows) and len(rows) > 1:
            # one problem for a column absent from every row, not one per row
            problems.append(
                Problem(
                    f"required column is missing from every row{_typo(rows[0], name, known)}",
                    column=name,
                )
            )
        else:
            for i in missing:
                problems.append(
                    Problem(
                        f"required column is missing{_typo(rows[i], name, known)}",
                        row=i,
                        column=name,
                    )
                )
        return None


def _typo(row: dict[str, Any], name: str, known: set[str]) -> str:
    """A hint when the row has a similar column the model does not know (a typo)."""
    unknown = [k for k in row if k not in known and isinstance(k, str)]
    close = difflib.get_close_matches(name, unknown, n=1, cutoff=0.75)
    return f" (the row has {close[0]!r}: a typo?)" if close else ""


def _check(
    values: list[Any], spec: ColumnSpec, problems: list[Problem], quality: Quality, policy: Policy
) -> None:
    allowed = _ALLOWED[spec.kind]
    types = set(map(type, values))
    if not types <= (allowed | _NONE if spec.nullable else allowed):
        none_ok = spec.nullable
        for i, v in enumerate(values):
            t = type(v)
            if t in allowed or (v is None and none_ok):
                continue
            if v is None:
                problems.append(
                    Problem(
                        "null is not allowed: the reference data had no missing values here",
                        row=i,
                        column=spec.name,
                    )
                )
            else:
                problems.append(
                    Problem(
                        f"expected {_EXPECTED[spec.kind]}, got {_name(v)}", row=i, column=spec.name
                    )
                )
        return
    if spec.kind == "integer" and float in types:
        for i, v in enumerate(values):
            if type(v) is float and not v.is_integer():
                problems.append(
                    Problem(f"expected a whole number, got {v}", row=i, column=spec.name)
                )
    if spec.kind in ("number", "integer") and spec.min is not None and spec.max is not None:
        lo, hi = spec.min, spec.max
        # min()/max() are C loops over the values: cheaper than NumPy for the few rows of a
        # typical request, and the exact rows are only looked for when something is outside
        present = values if type(None) not in types else [v for v in values if v is not None]
        if present and (min(present) < lo or max(present) > hi):
            outside = [i for i, v in enumerate(values) if v is not None and (v < lo or v > hi)]
            if policy.reject_out_of_range:
                for i in outside[:MAX_PROBLEMS]:
                    problems.append(
                        Problem(
                            f"{values[i]} is outside the reference range [{lo}, {hi}]",
                            row=i,
                            column=spec.name,
                        )
                    )
            else:
                quality.out_of_range[spec.name] = len(outside)
    elif spec.kind == "string" and spec.categories is not None:
        seen = set(values)
        seen.discard(None)
        unseen = seen.difference(spec.category_set)
        if unseen:
            if policy.reject_unseen_categories:
                for i, v in enumerate(values):
                    if v in unseen:
                        problems.append(
                            Problem(
                                f"category {v!r} was never seen in the reference data",
                                row=i,
                                column=spec.name,
                            )
                        )
            else:
                quality.unseen_categories[spec.name] = sum(1 for v in values if v in unseen)


def _name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)
