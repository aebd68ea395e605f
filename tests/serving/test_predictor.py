"""Routing at the centre: the predictor splits a request's rows between models by a per-row
assignment and puts the answers back in order, each naming its model; one log entry per model."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from sklearn.base import clone

from relevo.datasets import CHURN_FEATURES, CHURN_TARGET
from relevo.serving.pool import ROLES, Endpoint
from relevo.serving.predictor import Predictor, all_champion
from relevo.serving.records import frame_to_records
from relevo.serving.runner import ModelRunner
from relevo.serving.validation import Policy


class _Pool:
    """The pool's one method the predictor uses, over an endpoint with two real models."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint

    def endpoint(self, name: str) -> Endpoint:
        assert name == self._endpoint.deployment.name
        return self._endpoint


class _Recorder:
    """Takes log entries as the prediction log does (offer), and keeps them."""

    def __init__(self) -> None:
        self.entries: list = []

    def offer(self, entry) -> bool:
        self.entries.append(entry)
        return True


@pytest.fixture
def two_models(rv, churn_pipeline, churn_frame):
    champion = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    # a visibly different model on the same columns: trained on a quarter of the data
    part = churn_frame.iloc[::4]
    other = clone(churn_pipeline).set_params(model__C=0.01)
    other.fit(part[CHURN_FEATURES], part[CHURN_TARGET])
    challenger = rv.registry.register("churn", other, churn_frame, target="churned")
    dep = rv.deployments.deploy("churn", champion.ref, key="customer_id")
    runners = tuple(
        ModelRunner(rv.registry.load(v.ref), max_rows=64, max_wait_s=0.0)
        for v in (champion, challenger)
    )
    return Endpoint(dep, runners), churn_pipeline, other


def _predict(endpoint, rows, assign):
    log = _Recorder()
    predictor = Predictor(_Pool(endpoint), policy=Policy(), prediction_log=log, assign=assign)
    answer = asyncio.run(predictor.predict("churn", rows))
    return answer, log.entries


def test_rows_split_between_two_models_come_back_in_order(two_models, churn_frame):
    endpoint, first, second = two_models
    sample = churn_frame.iloc[:25]
    rows = frame_to_records(sample.drop(columns=[CHURN_TARGET]))
    pattern = np.array([i % 3 == 1 for i in range(25)], dtype=np.int8)

    def assign(deployment, keys, n):
        assert keys == [r["customer_id"] for r in rows]  # the keys reach the assignment
        return pattern

    answer, entries = _predict(endpoint, rows, assign)
    features = sample[CHURN_FEATURES]
    expected = np.where(
        pattern == 1,
        second.predict_proba(features)[:, 1],
        first.predict_proba(features)[:, 1],
    )
    got = [p["probability"] for p in answer.predictions]
    assert np.allclose(got, expected, rtol=0, atol=1e-12)
    refs = [r.ref for r in endpoint.runners]
    assert [p["model"] for p in answer.predictions] == [refs[m] for m in pattern]
    # the two models really disagree on these rows, so a mix-up could not pass unseen
    assert not np.allclose(first.predict_proba(features)[:, 1], expected)

    assert sorted(e.model_version for e in entries) == [1, 2]
    by_version = {e.model_version: e for e in entries}
    for m, version in enumerate((1, 2)):
        entry = by_version[version]
        picked = np.flatnonzero(pattern == m).tolist()
        if "role" in type(entry).__dataclass_fields__:  # the log branch's LogEntry
            assert entry.role == ROLES[m]
        assert list(entry.ids) == [answer.predictions[i]["id"] for i in picked]
        assert list(entry.keys) == [rows[i]["customer_id"] for i in picked]
        assert [o["probability"] for o in entry.outputs] == [got[i] for i in picked]


def test_the_basic_strategy_sends_every_row_to_the_champion(two_models, churn_frame):
    endpoint, first, _second = two_models
    sample = churn_frame.iloc[:5]
    rows = frame_to_records(sample.drop(columns=[CHURN_TARGET]))
    answer, entries = _predict(endpoint, rows, all_champion)
    assert {p["model"] for p in answer.predictions} == {endpoint.runners[0].ref}
    expected = first.predict_proba(sample[CHURN_FEATURES])[:, 1]
    assert np.allclose([p["probability"] for p in answer.predictions], expected, atol=1e-12)
    assert len(entries) == 1 and entries[0].model_version == 1


def test_a_micro_batch_of_requests_is_logged_as_one_entry_each_row_its_own(
    two_models, churn_frame, tmp_path
):
    """Concurrent requests scored in one model call go to the log as one entry (one
    serialisation per batch); each stored row keeps its own request's id, key, features,
    output and latency."""
    import time

    import orjson

    from relevo.serving.entries import FIELDS
    from relevo.serving.log import PredictionLog

    endpoint, first, _second = two_models
    stored: list[tuple] = []
    plog = PredictionLog(lambda rows: stored.extend(rows) or len(rows), flush_interval_s=0.01)
    predictor = Predictor(_Pool(endpoint), policy=Policy(), prediction_log=plog)
    endpoint.runners[0].batcher.on_scored = predictor.log_scored
    offered: list[list[int]] = []
    offer_many = plog.offer_many

    def spy(entries):
        offered.append([e.n for e in entries])
        return offer_many(entries)

    plog.offer_many = spy  # type: ignore[method-assign]
    sample = churn_frame.iloc[:12]
    rows = frame_to_records(sample.drop(columns=[CHURN_TARGET]))
    requests = [rows[0:1], rows[1:5], rows[5:6], rows[6:12]]
    batches: list[int] = []
    endpoint.runners[0].batcher.on_batch = batches.append

    async def concurrently():
        started = time.perf_counter()
        # staggered start times: the requests' latencies differ
        return await asyncio.gather(
            *(
                predictor.predict("churn", r, started=started - 0.01 * k)
                for k, r in enumerate(requests)
            )
        )

    answers = asyncio.run(concurrently())
    plog.close()
    assert batches == [12]  # the four requests were scored in one model call
    assert offered == [[12]]  # and logged as one entry
    by_id = {r[FIELDS.index("id")]: r for r in stored}
    assert len(by_id) == 12
    expected = first.predict_proba(sample[CHURN_FEATURES])[:, 1]
    i = 0
    for k, (request, answer) in enumerate(zip(requests, answers, strict=True)):
        for row, prediction in zip(request, answer.predictions, strict=True):
            got = by_id[prediction["id"]]
            assert got[FIELDS.index("routing_key")] == str(row["customer_id"])
            features = orjson.loads(got[FIELDS.index("features")])
            assert features == {c: row[c] for c in endpoint.runners[0].plan.names}
            output = orjson.loads(got[FIELDS.index("output")])
            assert output["probability"] == pytest.approx(expected[i], abs=1e-12)
            # each row carries its own request's latency (0.01 s more per request started)
            assert got[FIELDS.index("latency_ms")] >= 10.0 * k
            i += 1
    latencies = [by_id[a.predictions[0]["id"]][FIELDS.index("latency_ms")] for a in answers]
    assert latencies[1] < latencies[2] < latencies[3]  # batched together, still apart


def test_a_micro_batch_mixing_coerced_and_clean_requests_logs_each_row_as_validated(
    two_models, churn_frame
):
    """A request whose numbers came as text is validated the slow way (coerced); batched with
    clean requests, its rows are still logged with the numbers the model got."""
    import orjson

    from relevo.serving.entries import FIELDS
    from relevo.serving.log import PredictionLog

    endpoint, _first, _second = two_models
    stored: list[tuple] = []
    plog = PredictionLog(lambda rows: stored.extend(rows) or len(rows), flush_interval_s=0.01)
    predictor = Predictor(_Pool(endpoint), policy=Policy(), prediction_log=plog)
    endpoint.runners[0].batcher.on_scored = predictor.log_scored
    batches: list[int] = []
    endpoint.runners[0].batcher.on_batch = batches.append
    plan = endpoint.runners[0].plan
    column = plan.num_names[0]
    rows = frame_to_records(churn_frame.iloc[:6].drop(columns=[CHURN_TARGET]))
    texted = [{**r, column: str(r[column])} for r in rows[2:4]]
    requests = [rows[0:2], texted, rows[4:6]]

    async def concurrently():
        return await asyncio.gather(*(predictor.predict("churn", r) for r in requests))

    answers = asyncio.run(concurrently())
    plog.close()
    assert batches == [6]
    by_id = {r[FIELDS.index("id")]: r for r in stored}
    for request, answer in zip(requests, answers, strict=True):
        for row, prediction in zip(request, answer.predictions, strict=True):
            features = orjson.loads(by_id[prediction["id"]][FIELDS.index("features")])
            expected = {c: row[c] for c in plan.names}
            expected[column] = float(row[column])  # the text as the number the model got
            assert features == expected
            assert type(features[column]) is not str
