"""A `fallback` row (the champion answered a row its challenger failed on) names the challenger
that failed on it, through the log's spool and writer into the store, so the gates charge it to
that challenger alone: not to one deployed over it while its failures were still being logged."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np
import orjson
import pytest
from killed import left_in_the_spool
from sklearn.base import clone

from relevo.datasets import CHURN_FEATURES, CHURN_TARGET
from relevo.routing.stats import arms, rollout_stats
from relevo.serving.entries import LogEntry, decode, encode, rows_of
from relevo.serving.log import RowStore, open_prediction_log
from relevo.settings import Settings

OLD = "churn-broken:1"


@pytest.fixture
def canary(rv, churn_pipeline, churn_frame):
    """Deployment `churn`: churn:1, with churn-small:1 as its canary at 50 %."""
    rv.registry.register("churn", churn_pipeline, churn_frame, target=CHURN_TARGET)
    rv.deployments.deploy("churn", "churn:1")
    small = clone(churn_pipeline).set_params(model__C=0.01)
    small.fit(churn_frame[CHURN_FEATURES], churn_frame[CHURN_TARGET])
    rv.registry.register("churn-small", small, churn_frame, target=CHURN_TARGET)
    return rv.deployments.deploy("churn", "churn-small:1", weight=0.5, actor="test")


def _entry(ids: list[str], role: str = "fallback", **marks: str) -> LogEntry:
    """An entry of the champion churn:1 (number block and all when it has several rows)."""
    ages = [float(30 + k) for k in range(len(ids))]
    return LogEntry(
        "churn", "churn", 1, time.time(), ids, {"age": ages}, [{"label": 1}] * len(ids), 2.5,
        role=role, numeric=("age",), numbers=np.asarray([ages]).T, **marks,
    )  # fmt: skip


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_fallback_entries_replayed_from_the_spool_keep_their_challenger_and_the_gates_read_it(
    rv, canary, monkeypatch, writer
):
    monkeypatch.setenv("RELEVO_LOG_WRITER", writer)
    rv.settings = rv.settings.model_copy(update={"log_writer": Settings().log_writer})
    payloads = [
        encode(_entry(["old-1"], challenger=OLD)),  # a request's row
        encode(_entry(["old-2", "old-3", "old-4"], challenger=OLD)),  # a micro-batch's
        encode(_entry(["old-5", "old-6"], source="batch", challenger=OLD)),  # a batch run's
        encode(_entry(["new-1", "new-2"], challenger=canary.challenger_ref)),
        # as versions before the challenger wrote them: a request's, and a batch run's
        encode(_entry(["unnamed-1"])),
        encode(_entry(["unnamed-2", "unnamed-3"], source="batch")),
        encode(_entry(["champion-1", "champion-2"], role="champion")),
    ]
    left_in_the_spool(rv, payloads)

    plog = open_prediction_log(rv)  # the next start replays the spool
    assert plog is not None
    plog.close()
    stored = {r["id"]: r for chunk in rv.store.predictions.iter_rows("churn") for r in chunk}
    assert len(stored) == 13
    named = {i: (r["challenger"], r["source"]) for i, r in stored.items()}
    assert named == {
        **{f"old-{k}": (OLD, None) for k in (1, 2, 3, 4)},
        **{f"old-{k}": (OLD, "batch") for k in (5, 6)},
        "new-1": ("churn-small:1", None),
        "new-2": ("churn-small:1", None),
        "unnamed-1": (None, None),
        "unnamed-2": (None, "batch"),
        "unnamed-3": (None, "batch"),
        "champion-1": (None, None),
        "champion-2": (None, None),
    }
    assert json.loads(stored["old-3"]["features"]) == {"age": 31.0}

    # the current challenger is charged with its own failures and the unnamed ones, never
    # with the six of churn-broken:1
    _champion, challenger = arms(rv.store, canary)
    assert (challenger.model, challenger.rows, challenger.errors) == ("churn-small:1", 5, 5)
    stats = rollout_stats(rv.store, canary)
    assert (stats.challenger.rows, stats.challenger.errors) == (5, 5)
    assert stats.champion.rows == 2


def test_a_fallback_entrys_header_ends_with_its_source_and_challenger():
    """Versions before the challenger accept a header of its format's length or one more (a
    batch run's source): they keep a segment holding a fallback entry (two more) for a version
    that can read it, rather than store its rows without their challenger."""
    for ids, size in ((["a"], 9), (["a", "b"], 10)):
        entry = _entry(ids)
        assert len(orjson.loads(encode(entry).split(b"\n", 1)[0])) == size
        for source in (None, "batch"):
            marked = replace(entry, source=source, challenger=OLD)
            assert orjson.loads(encode(marked).split(b"\n", 1)[0])[size:] == [source, OLD]
            again = decode(encode(marked))
            assert (again.source, again.challenger) == (source, OLD)
        again = decode(encode(replace(entry, source="batch")))
        assert (again.source, again.challenger) == ("batch", None)
    with pytest.raises(ValueError, match="known format"):
        decode(b'[1, "churn", "churn", 1, 0.0, ["a"], 3.0, null, "fallback", null, 7]\n{}\n{}')
    with pytest.raises(ValueError, match="known format"):
        decode(b'[1, "churn", "churn", 1, 0.0, ["a"], 3.0, null, "fallback", 7, "x:1"]\n{}\n{}')


def test_a_dead_lettered_fallback_row_keeps_its_challenger(tmp_path):
    entry = _entry(["a", "b"])
    letters = RowStore(lambda rows: 0, tmp_path / "dead.jsonl")
    for shared in (True, False):
        named = replace(entry, challenger=OLD)
        letters.dead_letter_rows(rows_of([decode(encode(named))], shared), "refused")
    letters.dead_letter_rows(rows_of([decode(encode(replace(entry, source="batch")))]), "no")
    lines = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [(line["challenger"], line["source"]) for line in lines] == [(OLD, None)] * 4 + [
        (None, "batch")
    ] * 2
    assert {line["features"] for line in lines} == {'{"age":30.0}', '{"age":31.0}'}
