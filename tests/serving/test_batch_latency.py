"""A batch run's rows in the prediction log are marked as batch rows: they count as rows (and a
failing challenger's as its errors) but their `latency_ms`, a chunk's model call, is no request's
latency, so the rollout gates' latency, `relevo status` and the latency alert leave them out."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pytest
from killed import left_in_the_spool
from sklearn.base import clone

from relevo.datasets import CHURN_FEATURES, CHURN_TARGET, make_churn
from relevo.monitoring.alerts import config, health
from relevo.routing.gates import LatencyGate, matched_quantile
from relevo.routing.stats import rollout_stats
from relevo.serving.batch import score_frame
from relevo.serving.entries import LogEntry, columns_of, decode, encode, rows_of
from relevo.serving.log import RowStore, open_prediction_log
from relevo.serving.spool import HeldSegment
from relevo.settings import Settings

#: how long each model call of the batch run takes: far above every API row's latency
SLOW_S = 0.06


class Slow:
    """Delegates to a fitted model, `SLOW_S` seconds a call once `SLOW["on"]` is set (the
    registration's rehearsal runs at full speed)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.classes_ = inner.classes_
        self.feature_names_in_ = getattr(inner, "feature_names_in_", None)

    def fit(self, x: Any, y: Any) -> Slow:
        self.inner.fit(x, y)
        return self

    def predict(self, x: Any) -> Any:
        if SLOW["on"]:
            time.sleep(SLOW_S)
        return self.inner.predict(x)

    def predict_proba(self, x: Any) -> Any:
        if SLOW["on"]:
            time.sleep(SLOW_S)
        return self.inner.predict_proba(x)


SLOW = {"on": False}


@pytest.fixture
def slow():
    SLOW["on"] = False
    yield SLOW
    SLOW["on"] = False


def nearest_rank(values: np.ndarray, q: float) -> float:
    """The store's quantile: the (int(n (1 - q)) + 1)-th largest value."""
    ordered = np.sort(values)[::-1]
    return float(ordered[int(values.size * (1.0 - q))])


@pytest.fixture
def canary(rv, churn_pipeline, churn_frame, slow):
    """Deployment `churn`: the slow churn pipeline, a slow smaller one as a canary at 30 %."""
    rv.registry.register("churn", Slow(churn_pipeline), churn_frame, target=CHURN_TARGET)
    rv.deployments.deploy("churn", "churn:1", key="customer_id")
    small = clone(churn_pipeline).set_params(model__C=0.01)
    small.fit(churn_frame[CHURN_FEATURES], churn_frame[CHURN_TARGET])
    rv.registry.register("churn-small", Slow(small), churn_frame, target=CHURN_TARGET)
    return rv.deployments.deploy("churn", "churn-small:1", weight=0.3, actor="test")


def api_rows(rv, rng: np.random.Generator, per_model: int) -> dict[str, np.ndarray]:
    """`per_model` rows of each model answered over HTTP (a request's latency, a few ms),
    logged as the server logs them; their latencies by role."""
    now = datetime.now(UTC) + timedelta(seconds=1)
    latencies = {
        "champion": rng.lognormal(1.0, 0.5, per_model),
        "challenger": rng.lognormal(1.1, 0.5, per_model),
    }
    models = {"champion": ("churn", 1), "challenger": ("churn-small", 1)}
    rows = [
        (f"api-{role}-{i:05d}", "churn", *models[role], now, None, "{}", "{}", float(ms), role)
        for role, values in latencies.items()
        for i, ms in enumerate(values)
    ]
    rv.store.predictions.insert_many(rows)
    return latencies


def test_a_batch_runs_rows_are_stored_marked_as_batch_rows(rv, canary, slow):
    score_frame(rv, "churn", make_churn(300, seed=4), chunk_rows=100)
    stored = [r for chunk in rv.store.predictions.iter_rows("churn") for r in chunk]
    assert len(stored) == 300
    assert {r["source"] for r in stored} == {"batch"}
    assert {r["role"] for r in stored} == {"champion", "challenger"}


def test_the_gates_and_status_read_only_the_api_rows_latency(rv, canary, slow, cli):
    api = api_rows(rv, np.random.default_rng(7), 600)
    slow["on"] = True
    scored = score_frame(rv, "churn", make_churn(1000, seed=8), chunk_rows=250)
    batch = scored["model"].value_counts().to_dict()
    assert batch["churn:1"] > 500 and batch["churn-small:1"] > 200

    stats = rollout_stats(rv.store, rv.deployments.get("churn"))
    # rows count every row answered, the batch run's too
    assert stats.champion.rows == 600 + batch["churn:1"]
    assert stats.challenger.rows == 600 + batch["churn-small:1"]
    assert stats.challenger.errors == 0
    # latencies are the requests' only (the histogram reads within 0.5 % of the exact ones)
    champion_p99 = nearest_rank(api["champion"], 0.99)
    challenger_p99 = nearest_rank(api["challenger"], 0.99)
    assert stats.champion.latency_p99_ms == pytest.approx(champion_p99, rel=0.005)
    assert stats.challenger.latency_p99_ms == pytest.approx(challenger_p99, rel=0.005)
    matched = nearest_rank(api["champion"], matched_quantile(600))
    assert stats.champion_latency_matched_ms == pytest.approx(matched, rel=0.005)
    result = LatencyGate().check(canary, stats)
    assert result.verdict == "pass"
    assert f"over 600 rows against {stats.champion_latency_matched_ms:.1f} ms" in result.detail

    shown = json.loads(cli("status", "churn", "--json").stdout)
    by_role = {m["role"]: m for m in shown["models"]}
    assert by_role["champion"]["rows"] == 600 + batch["churn:1"]
    assert by_role["champion"]["latency_p99_ms"] == pytest.approx(champion_p99, rel=0.005)
    assert by_role["challenger"]["latency_p99_ms"] == pytest.approx(challenger_p99, rel=0.005)
    assert by_role["challenger"]["latency_rows"] == 600
    table = cli("status", "churn").stdout
    assert f"{champion_p99:.1f}" in table


def test_a_batch_runs_rows_alone_leave_the_latency_gate_inconclusive(rv, canary, slow):
    slow["on"] = True
    score_frame(rv, "churn", make_churn(2500, seed=9), chunk_rows=1250)
    stats = rollout_stats(rv.store, rv.deployments.get("churn"))
    assert stats.champion.rows > 500 and stats.challenger.rows > 500
    assert stats.champion.latency_p99_ms is None and stats.challenger.latency_p99_ms is None
    result = LatencyGate().check(canary, stats)
    assert result.verdict == "inconclusive"
    assert "a batch run's rows carry no request latency" in result.detail


def test_the_latency_alert_does_not_fire_from_a_batch_runs_rows(rv, canary, slow):
    config.update(rv, "churn", ["alerts.latency_p99.threshold_ms=40"])
    api = api_rows(rv, np.random.default_rng(5), 300)
    slow["on"] = True
    score_frame(rv, "churn", make_churn(1000, seed=6), chunk_rows=250)

    now = datetime.now(UTC) + timedelta(seconds=5)
    (signal,) = health.latency_p99(rv, "churn", now)
    everything = np.concatenate([api["champion"], api["challenger"]])
    assert not signal.firing
    assert signal.value == pytest.approx(nearest_rank(everything, 0.99))
    assert "over 600 rows" in signal.message


# ------------------------------------------------------------------ the mark in the log's spool


def _old_payload(form: int, ids: list[str], ages: list[float], role: str = "champion") -> bytes:
    """An entry as versions before the batch mark wrote it (and as today's requests' are):
    format 1 (features as JSON), 2 (and a float64 block of the number columns) or 3 (the
    block alone)."""
    n = len(ids)
    head: list[Any] = [form, "churn", "churn", 1, time.time(), ids, 2.5, None, role]
    if form > 1:
        head.append(["age"])
    if n == 1:
        docs = [orjson.dumps(head), orjson.dumps({"age": ages[0]}), orjson.dumps({"label": 1})]
    else:
        features = None if form == 3 else {"age": ages}
        outputs = [{"label": 1}] * n
        docs = [orjson.dumps(head), orjson.dumps(features), orjson.dumps(outputs)]
    if form > 1:
        docs.append(np.asarray(ages, dtype="<f8").tobytes())
    return b"\n".join(docs)


def _writer(rv, monkeypatch, writer: str) -> None:
    monkeypatch.setenv("RELEVO_LOG_WRITER", writer)
    rv.settings = rv.settings.model_copy(update={"log_writer": Settings().log_writer})


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_spool_entries_of_the_format_before_the_mark_replay_as_requests_rows(
    rv, canary, monkeypatch, writer
):
    _writer(rv, monkeypatch, writer)
    payloads = [
        _old_payload(1, ["one-row"], [40.0]),
        _old_payload(1, ["f1-a", "f1-b"], [41.0, 42.0]),
        _old_payload(2, ["f2-a", "f2-b", "f2-c"], [43.0, 44.0, 45.0]),
        _old_payload(3, ["f3-a", "f3-b"], [46.0, 47.0], role="challenger"),
    ]
    # today's requests' entries are written exactly so: earlier versions still read them
    again = decode(payloads[2])
    entry = LogEntry(
        again.deployment, again.model_name, again.model_version, again.created_at, again.ids,
        columns_of(again), again.outputs, again.latency_ms, None, again.role,
        again.numeric, again.numbers,
    )  # fmt: skip
    assert encode(entry) == payloads[2]
    left_in_the_spool(rv, payloads)

    plog = open_prediction_log(rv)  # the next start replays the spool
    assert plog is not None
    plog.close()
    stored = {r["id"]: r for chunk in rv.store.predictions.iter_rows("churn") for r in chunk}
    assert len(stored) == 8
    assert {r["source"] for r in stored.values()} == {None}
    assert {r["latency_ms"] for r in stored.values()} == {2.5}
    assert json.loads(stored["f3-b"]["features"]) == {"age": 47.0}
    assert stored["f3-b"]["role"] == "challenger"


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_a_batch_runs_entries_replayed_from_the_spool_keep_their_mark(
    rv, canary, monkeypatch, writer
):
    _writer(rv, monkeypatch, writer)
    real = HeldSegment.hand_over

    def interrupted(self):  # Ctrl-C right after the run succeeded: the spool has its rows
        real(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(HeldSegment, "hand_over", interrupted)
    with pytest.raises(KeyboardInterrupt):
        score_frame(rv, "churn", make_churn(301, seed=3), chunk_rows=100)  # a one-row chunk
    assert rv.store.predictions.count("churn") == 0
    monkeypatch.setattr(HeldSegment, "hand_over", real)

    plog = open_prediction_log(rv)
    assert plog is not None
    plog.close()
    stored = [r for chunk in rv.store.predictions.iter_rows("churn") for r in chunk]
    assert len(stored) == 301
    assert {r["source"] for r in stored} == {"batch"}


def test_a_batch_entrys_header_is_one_field_longer_than_its_formats():
    """Versions before the mark check a header's length: they keep a segment holding a batch
    run's entry for a version that can read it, rather than store its rows unmarked."""
    for numbers, size in ((None, 9), (np.array([[1.0], [2.0]]), 10)):
        entry = LogEntry(
            "churn", "churn", 1, 0.0, ["a", "b"], {"age": [1.0, 2.0]}, [{}, {}], 3.0,
            numeric=("age",), numbers=numbers,
        )  # fmt: skip
        marked = replace(entry, source="batch")
        assert len(orjson.loads(encode(entry).split(b"\n", 1)[0])) == size
        assert orjson.loads(encode(marked).split(b"\n", 1)[0])[size:] == ["batch"]
        assert decode(encode(marked)).source == "batch" and decode(encode(entry)).source is None
    with pytest.raises(ValueError, match="known format"):
        decode(b'[1, "churn", "churn", 1, 0.0, ["a"], 3.0, null, "champion", 7]\n{}\n{}')


def test_a_dead_lettered_batch_row_keeps_its_mark(tmp_path):
    entry = LogEntry("churn", "churn", 1, 0.0, ["a", "b"], {"age": [1.0, 2.0]}, [{}, {}], 3.0)
    marked = replace(entry, source="batch")
    letters = RowStore(lambda rows: 0, tmp_path / "dead.jsonl")
    for shared in (True, False):
        letters.dead_letter_rows(rows_of([decode(encode(marked))], shared), "refused")
    letters.dead_letter_rows(rows_of([decode(encode(entry))]), "refused")
    lines = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [line["source"] for line in lines] == ["batch"] * 4 + [None] * 2
    assert {line["features"] for line in lines} == {'{"age":1.0}', '{"age":2.0}'}
