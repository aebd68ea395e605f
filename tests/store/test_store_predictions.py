"""The prediction log's bulk write: idempotent, so a write that did commit can be retried."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

from relevo.serving.ids import new_ids
from relevo.serving.log import LogEntry, PredictionLog
from relevo.store.predictions import BATCH, COLUMNS, FIELDS


def rows(n: int, created_at: datetime | None = None) -> list[tuple[Any, ...]]:
    created = created_at or datetime.now(UTC)
    return [
        (
            pid,
            "churn",
            "churn",
            1,
            created,
            None,
            orjson.dumps({"tenure_months": i}).decode(),
            orjson.dumps({"label": 1}).decode(),
            1.5,
            "champion",
        )
        for i, pid in enumerate(new_ids(n))
    ]


def stored(store) -> list[dict[str, Any]]:
    return [r for chunk in store.predictions.iter_rows("churn") for r in chunk]


def test_insert_many_skips_rows_already_stored(store):
    first = rows(10)
    assert store.predictions.insert_many(first) == 10
    # the same batch again (a retry after a commit whose reply was lost), then an overlap
    store.predictions.insert_many(first)
    more = rows(5)
    store.predictions.insert_many(first[5:] + more)

    assert store.predictions.count() == 15
    assert [r["id"] for r in stored(store)] == [r[0] for r in first + more]


def test_a_log_write_that_committed_but_failed_is_retried_without_loss(store):
    calls = []

    def commits_then_fails_once(batch: list[tuple[Any, ...]]) -> int:
        written = store.predictions.insert_many(batch)
        calls.append(len(batch))
        if len(calls) == 1:
            raise ConnectionError("server closed the connection unexpectedly")
        return written

    log = PredictionLog(commits_then_fails_once, flush_interval_s=0.01)
    try:
        for _ in range(3):
            ids = new_ids(2)
            log.put_blocking(
                LogEntry("churn", "churn", 1, time.time(), ids, {"x": [1, 2]}, [{}] * 2, 1.0)
            )
        log.flush(timeout_s=30)
    finally:
        log.close(timeout_s=30)

    assert store.predictions.count() == 6
    assert (log.depth, log.errors, log.dead_lettered) == (0, 1, 0)


def test_timestamps_come_back_as_the_same_instant_in_utc(store):
    paris = timezone(timedelta(hours=2))
    written = datetime(2026, 6, 1, 12, 30, 15, 250000, tzinfo=paris)
    store.predictions.insert_many(rows(1, written))

    (row,) = stored(store)
    assert row["created_at"] == written
    assert row["created_at"].tzinfo == UTC
    assert row["created_at"].hour == 10


def test_text_that_copy_escapes_and_other_values_come_back_as_written(store):
    created = datetime(2026, 6, 1, 12, 30, 15, 250000, tzinfo=UTC)
    tricky = [
        ("a" * 32, "dep\twith\\odd", "m", 1, created, "key\tone\nline\r\\", '{"t":"a\\tb"}',
         '{"label":"x\\\\y"}', 2, "champion"),
        ("b" * 32, "dep\twith\\odd", "m", 1, created, None, '{"u":"é😀"}', "{}", 1e-300,
         "champion"),
        ("c" * 32, "dep\twith\\odd", "m", 1, created, "\b\v\f", "{}", "{}", 0.1, "shadow"),
    ]  # fmt: skip
    assert store.predictions.insert_many(tricky) == 3
    back = [r for chunk in store.predictions.iter_rows("dep\twith\\odd") for r in chunk]
    assert [tuple(r[c] for c in COLUMNS) for r in back] == tricky


def test_a_timestamp_of_another_datetime_type_is_stored_too(store):
    # (not one of the types the COPY text is made for here: psycopg converts the rows itself)
    import pandas as pd

    written = pd.Timestamp("2026-06-01 12:30:15.25", tz="UTC")
    store.predictions.insert_many(rows(2, written))
    assert [r["created_at"] for r in stored(store)] == [written, written]


def _shared_rows(n: int, created: datetime, first: int = 0) -> list[tuple[Any, ...]]:
    """Rows of one multi-row entry as the log's writer process stores them: features once."""
    from relevo.store.predictions import Inputs

    ids = new_ids(n)
    columns = {"tenure_months": [first + i for i in range(n)], "region": ["north"] * n}
    inputs = Inputs(ids[0], "churn", created, orjson.dumps(columns).decode())
    out = orjson.dumps({"label": 1}).decode()
    return [
        (pid, "churn", "churn", 1, created, None, "", out, 1.5, "champion", inputs, i)
        for i, pid in enumerate(ids)
    ]


def test_a_batch_stored_with_its_features_once_reads_back_row_by_row(store):
    created = datetime.now(UTC)
    inline_rows = rows(3, created)
    shared = _shared_rows(25, created, first=100)
    other = _shared_rows(4, created, first=500)
    assert store.predictions.insert_many(inline_rows + shared + other) == 32
    # a retry of the same write stores nothing twice
    store.predictions.insert_many(shared + other)
    assert store.predictions.count("churn") == 32
    with store.engine.connect() as conn:
        entries = conn.exec_driver_sql("SELECT count(*) FROM prediction_inputs").scalar()
        empty = conn.exec_driver_sql(
            "SELECT count(*) FROM predictions WHERE features = '' AND inputs IS NOT NULL"
        ).scalar()
    assert (entries, empty) == (2, 29)  # two entries' features, each stored once

    expected = {r[0]: orjson.loads(r[6]) for r in inline_rows}
    expected |= {
        pid: {"tenure_months": 100 + i, "region": "north"} for i, (pid, *_) in enumerate(shared)
    }
    expected |= {
        pid: {"tenure_months": 500 + i, "region": "north"} for i, (pid, *_) in enumerate(other)
    }
    # small chunks: an entry's rows span several reads
    back = [r for chunk in store.predictions.iter_rows("churn", chunk_size=7) for r in chunk]
    assert {r["id"]: orjson.loads(r["features"]) for r in back} == expected
    assert set(back[0]) == set(FIELDS)

    # the feedback loop's read (the log joined to its labels) gets the same features
    joined = store.labels.joined("churn", None, created + timedelta(seconds=1), features=True)
    assert joined.features is not None
    got = {i: orjson.loads(f) for i, f in zip(joined.ids, joined.features, strict=True)}
    assert got == expected


def test_marked_and_unmarked_rows_of_one_write_are_stored_each_with_its_source(store):
    """A write may hold requests' rows (inline, or pointing at their entry's inputs) beside a
    batch run's rows (marked, either way): each is stored with its source, a request's none."""
    created = datetime.now(UTC)
    inline_rows = rows(3, created)
    shared = _shared_rows(4, created, first=10)
    batch_shared = [(*r, BATCH) for r in _shared_rows(5, created, first=20)]
    batch_inline = [(*r, None, None, BATCH) for r in rows(2, created)]
    every = inline_rows + batch_shared + shared + batch_inline
    assert store.predictions.insert_many(every) == 14
    store.predictions.insert_many(every)  # a retry stores nothing twice
    back = {r["id"]: r for r in stored(store)}
    assert len(back) == 14
    assert {back[r[0]]["source"] for r in inline_rows + shared} == {None}
    assert {back[r[0]]["source"] for r in batch_shared + batch_inline} == {BATCH}
    assert [orjson.loads(back[r[0]]["features"])["tenure_months"] for r in batch_shared] == [
        20,
        21,
        22,
        23,
        24,
    ]


def test_a_refused_batch_row_reaches_the_dead_letter_with_its_features_inline(tmp_path):
    from relevo.serving.log import RowStore
    from relevo.store.predictions import inline

    shared = _shared_rows(3, datetime.now(UTC), first=7)
    assert orjson.loads(inline(shared[2])[COLUMNS.index("features")]) == {
        "tenure_months": 9,
        "region": "north",
    }

    def refuse(batch):
        raise ValueError("value too long")

    letter = tmp_path / "dead.jsonl"
    RowStore(refuse, letter).store(shared)
    kept = [orjson.loads(line) for line in letter.read_bytes().splitlines()]
    assert [k["id"] for k in kept] == [r[0] for r in shared]
    assert [orjson.loads(k["features"])["tenure_months"] for k in kept] == [7, 8, 9]
    assert all(k["error"] == "ValueError: value too long" for k in kept)


def test_a_number_column_with_nulls_goes_into_the_copy_text():
    """(A batch's rows point at their place in its inputs; the other rows have none.) The COPY
    text is made for such a column too, as psycopg's text dumpers write it, instead of the
    rows falling back to one `write_row` per row."""
    from relevo.store.bulk import _copy_text

    assert _copy_text([["a", "b", "c"], [3, None, 0]]) == "a\t3\nb\t\\N\nc\t0\n"
