"""The profile builder in the log's writer thread: stored rows merge with later ones, a store
that fails keeps the profiles for the next try, and a failure to profile never costs a
logged prediction."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pandas as pd
import pytest

from relevo.datasets import make_churn
from relevo.datasets.churn import CHURN_FEATURES
from relevo.monitoring import NumericProfile
from relevo.monitoring.windows import load_window
from relevo.serving.entries import LogEntry, decode, encode
from relevo.serving.log import PredictionLog
from relevo.serving.profiling import ProfileBuilder, reason_of


@pytest.fixture
def version(rv, churn_pipeline, churn_frame):
    return rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")


def _entries(version, frame, pipeline, when: float, per: int = 1) -> list[LogEntry]:
    probs = pipeline.predict_proba(frame[CHURN_FEATURES])[:, 1].tolist()
    out = []
    for i in range(0, len(frame), per):
        part = frame.iloc[i : i + per]
        out.append(
            LogEntry(
                "churn", version.name, version.version, when,
                [f"id-{when}-{j}" for j in range(i, i + len(part))],
                {c: part[c].tolist() for c in CHURN_FEATURES},
                [{"probability": p, "label": int(p > 0.5)} for p in probs[i : i + per]],
                1.0,
            )
        )  # fmt: skip
    return out


def _same_profiles(rv, one: str, other: str, rows: int) -> tuple[datetime, datetime]:
    """The stored profiles of deployments `one` and `other` (one row each, this hour) are
    equal value for value but for their names; returns the hours searched."""
    hour = datetime.now(UTC) - timedelta(hours=2), datetime.now(UTC) + timedelta(hours=2)
    (a,) = rv.store.profiles.fetch(one, *hour)
    (b,) = rv.store.profiles.fetch(other, *hour)
    assert a.rows == b.rows == rows
    assert {**orjson.loads(a.payload), "deployment": other} == orjson.loads(b.payload)
    return hour


def _window(rv):
    now = datetime.now(UTC)
    return load_window(rv.store, "churn", now - timedelta(days=1), now + timedelta(days=1))


def test_persisting_twice_merges_into_the_replica_row(rv, version, churn_pipeline):
    builder = ProfileBuilder(rv.store, bucket_s=3600, replica="r1")
    first, second = make_churn(40, seed=1), make_churn(25, seed=2)
    now = time.time()
    builder.flushed([decode(encode(e)) for e in _entries(version, first, churn_pipeline, now)])
    builder.close()
    builder.flushed(
        [decode(encode(e)) for e in _entries(version, second, churn_pipeline, now, per=5)]
    )
    builder.close()
    assert rv.store.profiles.count("churn") == 1
    window = _window(rv)
    assert window is not None and window.rows == 65
    age = window.inputs.columns["age"]
    assert isinstance(age, NumericProfile)
    both = list(first.age) + list(second.age)
    assert age.mean == pytest.approx(sum(both) / len(both), rel=1e-12)


def test_a_store_that_fails_keeps_the_profiles_for_the_next_try(
    rv, version, churn_pipeline, monkeypatch
):
    errors: list[int] = []
    builder = ProfileBuilder(rv.store, replica="r1", on_error=lambda: errors.append(1))
    upsert = rv.store.profiles.upsert

    def down(rows, now=None):
        raise ConnectionError("the database is away")

    monkeypatch.setattr(rv.store.profiles, "upsert", down)
    builder.flushed(
        [decode(encode(e)) for e in _entries(version, make_churn(30), churn_pipeline, time.time())]
    )
    builder.close()
    assert builder.errors == 1 and errors == [1]
    assert rv.store.profiles.count("churn") == 0
    monkeypatch.setattr(rv.store.profiles, "upsert", upsert)
    builder.close()
    window = _window(rv)
    assert window is not None and window.rows == 30


def test_a_failure_to_profile_never_costs_a_logged_row(rv, version, churn_pipeline):
    builder = ProfileBuilder(rv.store, replica="r1")

    def broken(name, version):
        raise RuntimeError("no reference today")

    builder.reference = broken  # type: ignore[method-assign]
    plog = PredictionLog(rv.store.predictions.insert_many, flush_interval_s=0.05, profiles=builder)
    for entry in _entries(version, make_churn(20), churn_pipeline, time.time()):
        assert plog.offer(entry)
    plog.close()
    assert rv.store.predictions.count("churn") == 20
    assert builder.errors >= 1
    assert rv.store.profiles.count("churn") == 0


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("required column is missing (the row has 'agee': a typo?)", "missing_column"),
        ("expected a number, got 'abc'", "wrong_type"),
        ("null is not allowed: the reference data had no missing values here", "null"),
        ("120 is outside the reference range [18, 90]", "out_of_range"),
        ("category 'x' was never seen in the reference data", "unseen_category"),
        ("something new", "invalid"),
    ],
)
def test_rejection_reasons_have_stable_names(message, reason):
    assert reason_of(message) == reason


def test_logged_entries_become_the_same_columns_as_the_rows_sent(rv, version, churn_pipeline):
    from relevo.serving.profiling import _columns

    layout = rv.registry.reference_profile(version).layout.inputs
    frame = make_churn(12, seed=4)[CHURN_FEATURES].astype(object)
    frame.loc[1, "age"] = None
    frame.loc[2, "contract"] = None
    frame.loc[3, "region"] = "atlantis"
    entries = _entries(version, frame.iloc[:6], churn_pipeline, 1.0)
    entries += _entries(version, frame.iloc[6:], churn_pipeline, 1.0, per=3)
    columns, n, scores = _columns([decode(encode(e)) for e in entries], layout)
    assert n == 12 and len(scores) == 12
    for name in layout.numeric:
        expected = pd.to_numeric(frame[name]).to_numpy(dtype=float, na_value=np.nan)
        assert np.array_equal(columns[name], expected, equal_nan=True)
    for name in layout.categorical:
        assert columns[name].tolist() == frame[name].tolist()


def test_the_same_rows_make_the_same_profile_whatever_their_entries(rv, version, churn_pipeline):
    """One-row entries (their features parsed by the profiles) and larger ones (parsed once
    where they are stored) give the same profile, value for value."""
    builder = ProfileBuilder(rv.store, bucket_s=3600, replica="r1")
    frame = make_churn(30, seed=5)[CHURN_FEATURES].astype(object)
    frame.loc[4, "age"] = None
    frame.loc[7, "contract"] = None
    now = time.time()
    singles = _entries(version, frame, churn_pipeline, now)
    batched = [
        replace(e, deployment="batched")
        for e in _entries(version, frame, churn_pipeline, now, per=4)
    ]
    builder.flushed([decode(encode(e)) for e in singles + batched])
    builder.close()
    _same_profiles(rv, "churn", "batched", 30)


@pytest.fixture
def numeric_version(rv, numeric_pipeline, churn_frame):
    from relevo.datasets.churn import CHURN_NUMERIC

    reference = churn_frame[[*CHURN_NUMERIC, "churned"]]
    version = rv.registry.register("numeric", numeric_pipeline, reference, target="churned")
    return version, numeric_pipeline


def test_number_blocks_make_the_profile_the_parsed_features_make(rv, numeric_version, monkeypatch):
    """Entries of several rows that carry their number columns as a block (what the server
    sends) are profiled from it without parsing their features, and give the same profile,
    value for value, as the same entries without it (an older spool's)."""
    import relevo.serving.profiling as profiling
    from relevo.datasets.churn import CHURN_NUMERIC

    version, model = numeric_version
    frame = make_churn(40, seed=12)[CHURN_NUMERIC].astype(object)
    frame.loc[3, CHURN_NUMERIC[0]] = None
    numbers = frame.to_numpy(dtype=np.float64, na_value=np.nan)
    probs = model.predict_proba(pd.DataFrame(numbers, columns=CHURN_NUMERIC))[:, 1].tolist()
    now = time.time()

    def entries(deployment: str, block: bool) -> list[LogEntry]:
        out = []
        for i in range(0, 40, 8):
            part = frame.iloc[i : i + 8]
            out.append(
                LogEntry(
                    deployment, version.name, version.version, now,
                    [f"{deployment}-{j}" for j in range(i, i + 8)],
                    {c: part[c].tolist() for c in CHURN_NUMERIC},
                    [{"probability": p, "label": int(p > 0.5)} for p in probs[i : i + 8]],
                    1.0, None, "champion",
                    tuple(CHURN_NUMERIC) if block else (),
                    numbers[i : i + 8] if block else None,
                )
            )  # fmt: skip
        return out

    blocked = [decode(encode(e)) for e in entries("blocked", True)]
    parsed = [decode(encode(e)) for e in entries("parsed", False)]
    assert all(e.numbers is not None for e in blocked)
    assert all(e.numbers is None for e in parsed)
    calls: list[int] = []
    real = profiling.columns_of

    def counted(entry):
        calls.append(entry.n)
        return real(entry)

    monkeypatch.setattr(profiling, "columns_of", counted)
    builder = ProfileBuilder(rv.store, bucket_s=3600, replica="r1")
    builder.flushed(blocked)
    assert calls == []  # the blocks were enough
    builder.flushed(parsed)
    assert calls == [8] * 5
    builder.close()
    hour = _same_profiles(rv, "blocked", "parsed", 40)
    window = load_window(rv.store, "blocked", *hour)
    assert window is not None
    first = window.inputs.columns[CHURN_NUMERIC[0]]
    assert isinstance(first, NumericProfile)
    values = numbers[:, 0]
    assert (first.count, first.missing) == (39, 1)
    assert first.mean == pytest.approx(np.nanmean(values), rel=1e-12)


def test_an_entry_keeps_its_number_block_through_the_spool_format(rv):
    """The block goes out and back bit for bit (NaN, and bytes that are newlines, included),
    follows `piece`, and a block of the wrong size is refused, not read as other rows'
    numbers; a block that does not match its rows is never sent."""
    newlines = float(np.frombuffer(b"\n" * 8, dtype="<f8")[0])  # eight 0x0A bytes
    numbers = np.array([[1.5, newlines], [np.nan, -0.0], [1e308, 7.0]])
    entry = LogEntry(
        "d", "m", 1, 1.0, ["a", "b", "c"], {"x": [1.5, None, 1e308], "y": [newlines, -0.0, 7]},
        [{"value": 1.0}] * 3, [1.0, 2.0, 3.0], None, "champion", ("x", "y"), numbers,
    )  # fmt: skip
    back = decode(encode(entry))
    assert back.numeric == ("x", "y") and back.numbers is not None
    assert back.numbers.tobytes() == numbers.tobytes()
    assert orjson.loads(back.features_json or b"") == entry.features
    assert back.outputs == [{"value": 1.0}] * 3
    piece = decode(encode(entry.piece(1, 3)))
    assert piece.numbers is not None and piece.numbers.tobytes() == numbers[1:3].tobytes()
    assert decode(encode(entry.piece(0, 1))).numbers is None  # one row: stored as it came
    with pytest.raises(ValueError, match="number block holds 5 values for 3 rows of 2"):
        decode(encode(entry)[:-8])
    plain = decode(encode(replace(entry, numeric=(), numbers=None)))
    assert plain.numbers is None and plain.features_json == back.features_json
    wrong = decode(encode(replace(entry, numbers=numbers[:2])))
    assert wrong.numbers is None and wrong.features_json == back.features_json


def test_entries_of_the_first_format_still_decode_and_unknown_ones_are_refused():
    """A spool written before the number block (format 1) is read as it always was; a
    header of an unknown format, or a block header that cannot be one, is a ValueError."""
    old = (
        b'[1,"d","m",1,1.0,["a","b"],[1.0,2.0],null,"champion"]\n'
        b'{"x":[1.5,null]}\n[{"value":1.0},{"value":2.0}]'
    )
    entry = decode(old)
    assert entry.ids == ["a", "b"] and entry.numbers is None and entry.features is None
    assert orjson.loads(entry.features_json or b"") == {"x": [1.5, None]}
    assert entry.outputs == [{"value": 1.0}, {"value": 2.0}]
    single = decode(b'[1,"d","m",1,1.0,["a"],1.0,null,"champion"]\n{"x":1.5}\n{"value":1.0}')
    assert single.features == b'{"x":1.5}' and single.outputs == b'{"value":1.0}'
    block = np.zeros(4).tobytes()
    bad = [
        b'[4,"d","m",1,1.0,["a","b"],[1.0,2.0],null,"champion",["x"]]\n{}\n[]\n' + block,
        b'[2,"d","m",1,1.0,["a","b"],[1.0,2.0],null,"champion"]\n{}\n[]\n' + block,
        b'[2,"d","m",1,1.0,["a","b"],[1.0,2.0],null,"champion","xy"]\n{}\n[]\n' + block,
        b'[2,"d","m",1,1.0,["a"],[1.0],null,"champion",["x"]]\n{}\n[]\n' + block,
        b'{"not":"a list"}\n{}\n[]',
    ]
    for payload in bad:
        with pytest.raises(ValueError, match="not a prediction log entry of a known format"):
            decode(payload)
