"""The prediction log's promises: bounded memory, back-pressure, retries, nothing lost on close."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime

import numpy as np
import orjson
import pytest

from relevo.errors import UnavailableError
from relevo.serving.log import FIELDS, LogEntry, PredictionLog

ID, KEY, FEATURES = FIELDS.index("id"), FIELDS.index("routing_key"), FIELDS.index("features")


def _entry(n: int, start: int = 0) -> LogEntry:
    ids = [f"{start + i:032x}" for i in range(n)]
    features = {"x": [start + i for i in range(n)]}
    outputs = [{"probability": 0.5} for _ in range(n)]
    return LogEntry("churn", "churn", 1, time.time(), ids, features, outputs, 1.5, None)


class OperationalError(Exception):
    """Named like SQLAlchemy's: a transient failure (lost connection, locked database)."""


class SlowStore:
    """A store that writes slowly and fails the first `failures` writes."""

    def __init__(self, delay: float = 0.0, failures: int = 0) -> None:
        self.delay = delay
        self.failures = failures
        self.rows: list[tuple] = []
        self.calls = 0
        self.gate = threading.Event()
        self.gate.set()

    def write(self, rows: list[tuple]) -> int:
        self.calls += 1
        self.gate.wait()
        time.sleep(self.delay)
        if self.failures:
            self.failures -= 1
            raise OperationalError("database went away")
        self.rows.extend(rows)
        return len(rows)


def test_close_writes_everything_accepted():
    store = SlowStore()
    log = PredictionLog(store.write, flush_interval_s=10.0, flush_rows=1000)
    for k in range(50):
        log.put_blocking(_entry(3, start=k * 3))
    log.close()
    assert len(store.rows) == 150
    assert len({r[ID] for r in store.rows}) == 150
    assert orjson.loads(store.rows[7][FEATURES]) == {"x": 7}
    assert log.depth == 0


def test_failed_writes_are_retried_not_dropped():
    store = SlowStore(failures=3)
    log = PredictionLog(store.write, flush_interval_s=0.01)
    log.put_blocking(_entry(10))
    log.close()
    assert len(store.rows) == 10
    assert store.calls == 4
    assert log.errors == 3


def test_a_full_queue_makes_callers_wait_instead_of_growing():
    store = SlowStore()
    store.gate.clear()  # the store hangs: nothing drains
    log = PredictionLog(
        store.write, capacity_rows=20, flush_rows=10, flush_interval_s=0.01, wait_timeout_s=5
    )

    async def scenario() -> float:
        await log.put(_entry(10))
        await log.put(_entry(10, start=10))
        assert log.depth == 20
        started = time.monotonic()
        threading.Timer(0.3, store.gate.set).start()  # the store comes back
        await log.put(_entry(5, start=20))  # waits for room
        return time.monotonic() - started

    waited = asyncio.run(scenario())
    assert waited >= 0.25
    log.close()
    assert len(store.rows) == 25


def test_a_store_that_never_comes_back_is_a_clear_503():
    store = SlowStore()
    store.gate.clear()
    log = PredictionLog(store.write, capacity_rows=5, flush_interval_s=0.01, wait_timeout_s=0.3)

    async def scenario() -> None:
        await log.put(_entry(5))
        with pytest.raises(UnavailableError, match="prediction log is full"):
            await log.put(_entry(1, start=5))

    asyncio.run(scenario())
    assert log.depth == 5  # what was accepted is still held
    store.gate.set()
    log.close()
    assert len(store.rows) == 5


def test_an_entry_larger_than_the_queue_is_split_and_the_bound_holds():
    store = SlowStore()
    log = PredictionLog(store.write, capacity_rows=10, flush_rows=10, flush_interval_s=0.01)
    depths: list[int] = []
    original = store.write

    def write(rows: list[tuple]) -> int:
        depths.append(log.depth)  # what the queue holds while the writer works
        return original(rows)

    log._write = write
    big = _entry(25)
    assert log.offer(big) is False  # never accepted whole past the bound
    log.put_blocking(big)
    asyncio.run(log.put(_entry(23, start=100)))
    log.close()
    assert sorted(r[ID] for r in store.rows) == sorted([*big.ids, *_entry(23, start=100).ids])
    assert max(depths) <= 10
    assert [orjson.loads(r[FEATURES])["x"] for r in store.rows[:25]] == list(range(25))


def test_closed_log_refuses_new_entries():
    log = PredictionLog(SlowStore().write)
    log.close()
    with pytest.raises(UnavailableError):
        log.put_blocking(_entry(1))


def test_a_row_the_store_refuses_goes_to_the_dead_letter_and_the_rest_is_stored(tmp_path):
    stored: list[dict] = []

    def write(rows: list[tuple]) -> int:
        if any(r[KEY] == "poison" for r in rows):
            raise ValueError("value too long for type character varying(200)")
        stored.extend(rows)
        return len(rows)

    dead = tmp_path / "dead" / "predictions.jsonl"
    log = PredictionLog(write, flush_interval_s=0.01, dead_letter=dead)
    entry = _entry(9)
    keys = ["ok"] * 9
    keys[4] = "poison"
    log.put_blocking(
        LogEntry(
            "churn", "churn", 1, time.time(), entry.ids, entry.features, entry.outputs, 1.0, keys
        )
    )
    log.put_blocking(_entry(5, start=100))  # later entries are not blocked
    log.close()
    assert len(stored) == 13
    assert log.rows_written == 13
    lines = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert len(lines) == 1
    assert lines[0]["routing_key"] == "poison"
    assert "too long" in lines[0]["error"]
    assert lines[0]["id"] == entry.ids[4]


def _revoked() -> Exception:
    import psycopg.errors

    return psycopg.errors.InsufficientPrivilege("permission denied for table predictions")


def _read_only() -> Exception:
    import psycopg.errors
    import sqlalchemy.exc

    orig = psycopg.errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction")
    return sqlalchemy.exc.InternalError("INSERT INTO predictions ...", {}, orig)


@pytest.mark.parametrize("refusal", [_revoked, _read_only], ids=["revoked", "read-only"])
def test_a_store_that_refuses_every_row_is_retried_not_dead_lettered(tmp_path, refusal):
    # rights revoked or a read-only database (a standby after a failover) refuse every row
    # until an operator acts: the rows wait and are stored then, none is dead-lettered
    pytest.importorskip("psycopg")
    stored: list[tuple] = []
    refusing = [True]

    def write(rows: list[tuple]) -> int:
        if refusing[0]:
            raise refusal()
        stored.extend(rows)
        return len(rows)

    dead = tmp_path / "dead-letter" / "predictions.jsonl"
    log = PredictionLog(write, flush_interval_s=0.01, dead_letter=dead)
    log.put_blocking(_entry(6))
    time.sleep(0.3)  # a few failed tries
    assert log.errors >= 1
    refusing[0] = False  # the operator grants the rights back
    log.put_blocking(_entry(4, start=100))
    log.close()
    assert sorted(r[ID] for r in stored) == sorted(_entry(6).ids + _entry(4, start=100).ids)
    assert log.dead_lettered == 0
    assert not dead.exists()


def test_rows_the_store_cannot_take_before_a_stop_go_to_the_dead_letter(tmp_path):
    store = SlowStore()
    store.gate.clear()  # the store never answers
    dead = tmp_path / "dead.jsonl"
    log = PredictionLog(store.write, flush_interval_s=0.01, dead_letter=dead)
    log.put_blocking(_entry(4))
    time.sleep(0.1)
    threading.Timer(0.5, store.gate.set).start()  # let the hung write fail after the stop
    store.failures = 100
    log.close(timeout_s=0.3)
    kept = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert sorted(r["id"] for r in kept) == sorted(_entry(4).ids)
    assert log.depth == 0


def test_values_json_has_no_type_for_are_kept_as_text():
    import pandas as pd

    store = SlowStore()
    log = PredictionLog(store.write)
    entry = LogEntry(
        "churn",
        "churn",
        1,
        time.time(),
        ["a" * 32],
        {"signup": [pd.Timestamp("2026-01-02")]},
        [{"probability": 0.1}],
        1.0,
    )
    log.put_blocking(entry)
    log.close()
    assert orjson.loads(store.rows[0][FEATURES]) == {"signup": "2026-01-02 00:00:00"}


def test_every_field_of_a_stored_row_is_what_its_entry_logged():
    store = SlowStore()
    log = PredictionLog(store.write)
    when = 1_780_000_000.125
    batch = LogEntry(
        "churn", "churn", 3, when, ["a" * 32, "b" * 32, "c" * 32],
        {"x": [1.5, None, 3], "plan": ["basic", "pro\t\\", None]},
        [{"probability": 0.25, "label": 0}, {"probability": 0.75, "label": 1}, {}],
        [1.0, 2.5, 4.0], [7, "key-2", None], "challenger",
    )  # fmt: skip
    single = LogEntry(
        "churn", "churn", 3, when, ["d" * 32], {"x": [2.0], "plan": ["é"]}, [{"value": 9}], 0.5
    )
    log.put_blocking(batch)
    log.put_blocking(single)
    log.close()
    at = datetime.fromtimestamp(when, UTC)
    assert store.rows == [
        ("a" * 32, "churn", "churn", 3, at, "7", '{"x":1.5,"plan":"basic"}',
         '{"probability":0.25,"label":0}', 1.0, "challenger"),
        ("b" * 32, "churn", "churn", 3, at, "key-2", '{"x":null,"plan":"pro\\t\\\\"}',
         '{"probability":0.75,"label":1}', 2.5, "challenger"),
        ("c" * 32, "churn", "churn", 3, at, None, '{"x":3,"plan":null}', "{}", 4.0, "challenger"),
        ("d" * 32, "churn", "churn", 3, at, None, '{"x":2.0,"plan":"é"}', '{"value":9}', 0.5,
         "champion"),
    ]  # fmt: skip


def test_an_entry_that_leaves_its_features_to_its_number_block_stores_the_same_rows():
    """A micro-batch of all-float rows sends its features only as the float64 block; the
    writer makes the features from it: the stored rows are those of the entry that sent
    them as JSON, byte for byte."""

    from relevo.serving.entries import decode, encode, rows_of
    from relevo.store.predictions import Inputs

    rng = np.random.default_rng(3)
    numbers = rng.normal(size=(5, 3)) * 10.0 ** rng.integers(-300, 300, size=(5, 3))
    numbers[0, 0] = -0.0
    names = ("a", "b", "c")
    given = LogEntry(
        "churn", "churn", 1, time.time(), [f"{i:032x}" for i in range(5)],
        {n: numbers[:, j].tolist() for j, n in enumerate(names)},
        [{"probability": 0.5}] * 5, [1.0, 2.0, 3.0, 4.0, 5.0], None, "champion",
        names, numbers,
    )  # fmt: skip
    left = LogEntry(*[None if f == "features" else getattr(given, f) for f in FIELDS_OF])
    assert encode(left) != encode(given)

    def stored(entry: LogEntry, shared: bool = False) -> list[tuple]:
        # what reaches the store (an Inputs holder as its fields)
        return [
            tuple((v.key, v.deployment, v.created_at, v.text) if type(v) is Inputs else v
                  for v in row)
            for row in rows_of([decode(encode(entry))], shared)
        ]  # fmt: skip

    for shared in (True, False):
        assert stored(left, shared) == stored(given, shared)
    # a piece of it (an entry split to fit the queue), down to one row, alike
    for start, stop in ((0, 2), (4, 5)):
        assert stored(left.piece(start, stop)) == stored(given.piece(start, stop))


FIELDS_OF = [f.name for f in __import__("dataclasses").fields(LogEntry)]


# 8. entry format 3 takes the features from the number block after the model call: a model
#    that writes into its DataFrame input changes what is stored (format 2 kept the request's
#    values). Reached when a batch of several callers fails and the batcher scores each
#    caller alone on its own (numbers, others) part (batching.MicroBatcher._score), then logs
#    them as one group (predictor.Predictor._batch_entry).
def test_a_model_writing_into_its_input_does_not_change_the_logged_features():
    from relevo.registry.signature import ColumnSpec, Signature
    from relevo.serving.entries import decode, encode
    from relevo.serving.frames import build_frame
    from relevo.serving.validation import Plan, validate_rows

    plan = Plan(Signature((ColumnSpec("a", "number"), ColumnSpec("b", "number"))))
    parts = [
        validate_rows([{"a": 1.5, "b": 2.5}], plan),
        validate_rows([{"a": -3.5, "b": 4.5}], plan),
    ]
    assert all(p.floats for p in parts)
    for p in parts:  # each caller scored alone (the batch failed): the model gets its part
        frame = build_frame((p.numbers, p.others), plan)
        frame.iloc[:, 0] = frame.iloc[:, 0].clip(lower=0)  # e.g. a model that clips in place
    entry = LogEntry(
        "d",
        "m",
        1,
        0.0,
        ["x", "y"],
        None,
        [{}, {}],
        [1.0, 1.0],
        numeric=plan.num_tuple,
        numbers=np.concatenate([p.numbers for p in parts]),
    )  # as _batch_entry makes it when every part is floats
    features = orjson.loads(decode(encode(entry)).features_json)
    assert features == {"a": [1.5, -3.5], "b": [2.5, 4.5]}  # what the callers sent
