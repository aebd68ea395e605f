"""Validation over the batch: what passes, and every problem of what does not, bounded."""

from __future__ import annotations

import numpy as np
import pytest

from relevo.errors import InvalidInputError
from relevo.registry.signature import ColumnSpec, Signature
from relevo.serving.diagnosis import MAX_HINTS, MAX_PROBLEMS
from relevo.serving.validation import SMALL_ROWS, Plan, Policy, validate_rows

SIGNATURE = Signature(
    (
        ColumnSpec("age", "integer", min=18, max=90),
        ColumnSpec("income", "number", nullable=True, min=0.0, max=1e6),
        ColumnSpec("plan", "string", categories=("basic", "pro")),
        ColumnSpec("active", "boolean"),
    )
)


def _row(**changes):
    row = {"age": 40, "income": 5000.5, "plan": "basic", "active": True}
    row.update(changes)
    return row


def _problems(rows, **kwargs):
    with pytest.raises(InvalidInputError) as info:
        validate_rows(rows, SIGNATURE, **kwargs)
    return info.value, [(p.row, p.column, p.message) for p in info.value.problems]


def test_valid_rows_give_one_matrix_and_the_other_columns():
    v = validate_rows([_row(), _row(age=41, income=None, plan="pro", active=False)], SIGNATURE)
    assert v.n == 2
    assert v.numbers.shape == (2, 2)
    assert v.numbers[0].tolist() == [40.0, 5000.5]
    assert v.numbers[1, 0] == 41.0 and np.isnan(v.numbers[1, 1])
    assert v.others == {"plan": ["basic", "pro"], "active": [True, False]}
    columns = [list(c) for c in v.columns]
    assert columns == [[40, 41], [5000.5, None], ["basic", "pro"], [True, False]]
    assert not v.quality


def test_a_missing_column_and_a_wrong_type_in_other_rows_are_both_listed():
    # issue 12 item 5: row 0 lacks a column AND row 1 holds a string for a number
    rows = [_row(), _row(), _row()]
    del rows[0]["age"]
    rows[1]["age"] = "forty"
    error, problems = _problems(rows)
    assert problems == [
        (0, "age", "required column is missing"),
        (1, "age", "expected a number, got 'forty'"),
    ]
    assert error.total == 2


def test_numeric_text_is_a_number_and_other_text_is_not():
    v = validate_rows([_row(age="42", income=" 1.5e3 ")], SIGNATURE)
    assert v.numbers[0].tolist() == [42.0, 1500.0]
    assert v.columns[:2] == [[42], [1500.0]]
    _, problems = _problems([_row(age="42.5"), _row(income="lots"), _row(income="inf")])
    assert problems == [
        (0, "age", "expected a whole number, got '42.5'"),
        (1, "income", "expected a number, got 'lots'"),
        (2, "income", "expected a number, got 'inf'"),
    ]


def test_booleans_are_not_numbers_and_nulls_need_a_nullable_column():
    _, problems = _problems([_row(age=True), _row(age=None), _row(active=None)])
    assert [(r, c) for r, c, _ in problems] == [(0, "age"), (1, "age"), (2, "active")]
    assert "null is not allowed" in problems[1][2]


def test_findings_are_counted_and_can_be_rejected():
    rows = [_row(age=95), _row(plan="gold"), _row(age=17, plan="gold")]
    v = validate_rows(rows, SIGNATURE)
    assert v.quality.out_of_range == {"age": 2}
    assert v.quality.unseen_categories == {"plan": 2}
    _, problems = _problems(
        rows, policy=Policy(reject_unseen_categories=True, reject_out_of_range=True)
    )
    assert {(r, c) for r, c, _ in problems} == {(0, "age"), (2, "age"), (1, "plan"), (2, "plan")}


def test_the_problem_list_stops_at_the_limit_and_says_so():
    rows = [_row(age="x") for _ in range(5000)]
    error, problems = _problems(rows)
    assert len(problems) == MAX_PROBLEMS
    assert [r for r, _, _ in problems] == list(range(MAX_PROBLEMS))
    assert f"at least {MAX_PROBLEMS} problems" in error.message


def test_typo_hints_are_bounded_per_request(monkeypatch):
    import difflib

    calls = []
    real = difflib.get_close_matches

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(difflib, "get_close_matches", counting)
    # every row misses every column and carries 100 near-miss keys
    near = {f"{name}_{k}": 1 for name in ("age", "income", "plan", "active") for k in range(25)}
    rows = [dict(near) for _ in range(3000)]
    rows[1] = dict(near, age=40)  # not missing from every row: listed row by row
    _, problems = _problems(rows)
    assert len(calls) <= MAX_HINTS
    assert len(problems) == MAX_PROBLEMS
    assert problems[0][:2] == (0, "age")


def test_the_routing_key_must_be_text_or_a_whole_number():
    rows = [_row(customer="a"), _row(customer={"id": 3}), _row(customer="x" * 500)]
    _, problems = _problems(rows, key_column="customer")
    assert [(r, c) for r, c, _ in problems] == [(1, "customer"), (2, "customer")]
    v = validate_rows([_row(customer=7), _row()], Plan(SIGNATURE), key_column="customer")
    assert v.keys == [7, None]


@pytest.mark.parametrize(
    ("rows", "fragment"),
    [({"age": 3}, "must be a list"), ([], "empty"), ([1, _row()], "expected an object")],
)
def test_the_envelope(rows, fragment):
    error, _ = _problems(rows)
    assert fragment in str(error)


# An all-numeric signature: up to SMALL_ROWS rows take the one-pass check, more take NumPy's;
# both must find the same things.
NUMERIC = Signature(
    (
        ColumnSpec("age", "integer", min=18, max=90),
        ColumnSpec("income", "number", nullable=True, min=0.0, max=1e6),
        ColumnSpec("score", "number"),  # no reference range
    )
)


def _numeric_rows(n, **changes_of_last):
    rng = np.random.default_rng(n)
    rows = [
        {
            "age": int(rng.integers(18, 91)),
            "income": float(rng.uniform(0, 1e6)),
            "score": float(rng.normal(0, 1e300)),
        }
        for _ in range(n)
    ]
    rows[-1].update(changes_of_last)
    return rows


@pytest.mark.parametrize("n", [1, SMALL_ROWS, SMALL_ROWS + 1, 40])
def test_clean_numeric_rows_pass_whole_with_nothing_found(n):
    rows = _numeric_rows(n, age=40.0, income=None)  # a whole float and a null are fine here
    v = validate_rows(rows, NUMERIC)
    expected = np.array(
        [[r["age"], np.nan if r["income"] is None else r["income"], r["score"]] for r in rows]
    )
    np.testing.assert_array_equal(v.numbers, expected)
    assert v.quality is None
    assert [list(c) for c in v.columns] == [
        [r[k] for r in rows] for k in ("age", "income", "score")
    ]


@pytest.mark.parametrize("n", [1, SMALL_ROWS, SMALL_ROWS + 1, 40])
@pytest.mark.parametrize(
    ("column", "value"), [("age", 17), ("age", 91.0), ("income", -0.5), ("income", 1e6 + 1)]
)
def test_a_number_outside_the_reference_range_is_found_in_any_batch(n, column, value):
    rows = _numeric_rows(n, **{column: value})
    v = validate_rows(rows, NUMERIC)
    assert v.quality.out_of_range == {column: 1}
    with pytest.raises(InvalidInputError) as info:
        validate_rows(rows, NUMERIC, policy=Policy(reject_out_of_range=True))
    assert [(p.row, p.column) for p in info.value.problems] == [(n - 1, column)]


@pytest.mark.parametrize("n", [1, SMALL_ROWS, SMALL_ROWS + 1])
@pytest.mark.parametrize(
    ("column", "value", "fragment"),
    [
        ("age", 42.5, "whole number"),
        ("age", None, "null is not allowed"),
        ("score", float("nan"), ""),
        ("score", float("inf"), ""),
        ("income", float("-inf"), ""),
        ("age", float("nan"), ""),
    ],
)
def test_a_bad_number_in_any_batch_is_refused_naming_its_row(n, column, value, fragment):
    with pytest.raises(InvalidInputError) as info:
        validate_rows(_numeric_rows(n, **{column: value}), NUMERIC)
    problems = [(p.row, p.column, p.message) for p in info.value.problems]
    assert [(r, c) for r, c, _ in problems] == [(n - 1, column)]
    assert fragment in problems[0][2]


WIDE = Signature((ColumnSpec("n", "integer"), ColumnSpec("x", "number")))  # no ranges


@pytest.mark.parametrize("n", [1, SMALL_ROWS + 1])
@pytest.mark.parametrize(
    "value", [1e20, 2**63, -(2**63) - 1, 10**400, "1e20", "9223372036854775808"]
)
def test_an_integer_beyond_64_bits_is_refused_naming_its_row_not_scored_as_another(n, value):
    # the model gets an integer column as int64, which wraps such a value to -2**63
    rows = [{"n": 7, "x": 0.5} for _ in range(n)]
    rows[-1]["n"] = value
    with pytest.raises(InvalidInputError) as info:
        validate_rows(rows, WIDE)
    [problem] = info.value.problems
    assert (problem.row, problem.column) == (n - 1, "n")
    assert "too large for a 64-bit integer" in problem.message
    assert "whole number" not in problem.message


def test_an_integer_beyond_64_bits_is_refused_even_where_the_reference_had_a_range():
    _, problems = _problems([_row(age=1e20)])
    assert [(r, c) for r, c, _ in problems] == [(0, "age")]
    assert "too large for a 64-bit integer" in problems[0][2]


def test_the_integers_that_fit_64_bits_are_accepted():
    v = validate_rows([{"n": -(2**63), "x": 0.0}, {"n": 2**62, "x": 1.0}], WIDE)
    assert v.numbers[:, 0].tolist() == [-(2.0**63), 2.0**62]


@pytest.mark.parametrize("text", ["", "NA", "null", "None", "N/A"])
def test_missing_text_in_a_nullable_number_column_beside_text_columns_is_a_missing_value(text):
    v = validate_rows([_row(income=text), _row()], SIGNATURE)
    assert np.isnan(v.numbers[0, 1]) and v.numbers[1, 1] == 5000.5
    assert list(v.columns[1]) == [None, 5000.5]


def test_refused_findings_are_listed_beside_type_problems_in_one_answer():
    rows = [_row(age=100), _row(age="x"), _row(plan="gold"), _row(age="95")]
    policy = Policy(reject_out_of_range=True, reject_unseen_categories=True)
    _, problems = _problems(rows, policy=policy)
    assert problems == [
        (0, "age", "100 is outside the reference range [18, 90]"),
        (1, "age", "expected a number, got 'x'"),
        (3, "age", "95 is outside the reference range [18, 90]"),
        (2, "plan", "category 'gold' was never seen in the reference data"),
    ]


def test_more_rows_that_are_not_objects_than_listed_say_at_least_that_many():
    error, problems = _problems([1] * 150)
    assert len(problems) == MAX_PROBLEMS
    assert f"at least {MAX_PROBLEMS} problems" in str(error)
    error, problems = _problems([_row(), 1, "x"])
    assert problems == [
        (1, None, "expected an object, got a number"),
        (2, None, "expected an object, got a string"),
    ]
    assert "2 problem(s)" in str(error)


# 6. one cell, two problems: a type problem and an out-of-range finding
RANGED = Signature(
    (ColumnSpec("a", "integer", min=0, max=100), ColumnSpec("b", "number", min=0, max=1))
)


@pytest.mark.parametrize("value", [420.5, 10**19])
def test_a_cell_with_a_type_problem_is_not_also_reported_out_of_range(value):
    with pytest.raises(InvalidInputError) as caught:
        validate_rows([{"a": value, "b": 0.5}], RANGED, policy=Policy(reject_out_of_range=True))
    assert len(caught.value.problems) == 1, [p.message for p in caught.value.problems]


# 7. the refused findings' order depends on the path (docs: "column by column in row order")
def test_refused_findings_are_listed_column_by_column_in_row_order():
    with pytest.raises(InvalidInputError) as caught:
        validate_rows(
            [{"a": 5, "b": 2.0}, {"a": 500, "b": 0.5}],
            RANGED,
            policy=Policy(reject_out_of_range=True),
        )
    assert [(p.column, p.row) for p in caught.value.problems] == [("a", 1), ("b", 0)]
