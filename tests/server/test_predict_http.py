"""The JSON prediction API over real HTTP: answers, validation, log, metrics, changes, tokens."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from relevo.datasets import CHURN_FEATURES, make_churn
from relevo.serving.records import frame_to_records


def _rows(n: int, seed: int = 7) -> tuple[list[dict], object]:
    frame = make_churn(n, seed=seed)
    return frame_to_records(frame.drop(columns=["churned"])), frame


def _predict(url: str, rows: list[dict], **kwargs) -> httpx.Response:
    return httpx.post(f"{url}/v1/deployments/churn/predict", json={"instances": rows}, **kwargs)


def _metric(url: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def _wait_logged(rv, n: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while (count := rv.store.predictions.count("churn")) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def test_answers_equal_in_process_predict_proba(live_server, churn_pipeline, deployed):
    rows, frame = _rows(25)
    response = _predict(live_server.url, rows)
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    expected = churn_pipeline.predict_proba(frame[CHURN_FEATURES])[:, 1]
    assert len(predictions) == 25
    np.testing.assert_allclose([p["probability"] for p in predictions], expected, rtol=1e-12)
    assert [p["label"] for p in predictions] == (expected >= 0.5).astype(int).tolist()
    assert {p["model"] for p in predictions} == {deployed.ref}
    ids = [p["id"] for p in predictions]
    assert len(set(ids)) == 25 and ids == sorted(ids)


def test_concurrent_requests_each_get_their_own_rows(live_server, churn_pipeline):
    rows, frame = _rows(120, seed=11)
    expected = churn_pipeline.predict_proba(frame[CHURN_FEATURES])[:, 1]
    url = live_server.url
    calls_before = _metric(url, "relevo_model_batch_rows_count")
    rows_before = _metric(url, "relevo_model_batch_rows_sum")
    within_before = _metric(url, "relevo_model_batch_rows_bucket", le="64.0")

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=live_server.url) as client:
            return await asyncio.gather(
                *[
                    client.post("/v1/deployments/churn/predict", json={"instances": [row]})
                    for row in rows
                ]
            )

    answers = asyncio.run(fire())
    assert all(r.status_code == 200 for r in answers)
    # every caller got exactly one prediction: the one for its own row
    assert [len(r.json()["predictions"]) for r in answers] == [1] * 120
    got = [r.json()["predictions"][0]["probability"] for r in answers]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # the model calls scored each row sent exactly once, none over the batch limit (64 rows)
    calls = _metric(url, "relevo_model_batch_rows_count") - calls_before
    assert _metric(url, "relevo_model_batch_rows_sum") - rows_before == 120
    assert _metric(url, "relevo_model_batch_rows_bucket", le="64.0") - within_before == calls


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "empty"),
        (b"[1, 2]", 422, "instances"),
        (b'{"rows": []}', 422, "instances"),
        (b'{"instances": []}', 422, "empty"),
        (b'{"instances": {"age": 3}}', 422, "list"),
        (b'{"instances": [1]}', 422, "expected an object"),
    ],
)
def test_malformed_bodies_get_clear_4xx(live_server, body, status, fragment):
    response = httpx.post(
        f"{live_server.url}/v1/deployments/churn/predict",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == status
    assert fragment in response.json()["error"]


def test_every_row_problem_is_listed_with_row_and_column(live_server):
    rows, _ = _rows(3)
    del rows[0]["tenure_months"]
    rows[1]["age"] = "forty"
    rows[2]["monthly_charges"] = None  # the reference had no missing charges
    rows[2]["support_calls"] = True
    response = _predict(live_server.url, rows)
    assert response.status_code == 422
    problems = {(p["row"], p["column"]) for p in response.json()["problems"]}
    assert problems == {
        (0, "tenure_months"),
        (1, "age"),
        (2, "monthly_charges"),
        (2, "support_calls"),
    }
    messages = " ".join(p["message"] for p in response.json()["problems"])
    assert "missing" in messages and "expected a number" in messages and "null" in messages


def test_null_allowed_where_reference_had_missing_values(live_server):
    rows, _ = _rows(2)
    rows[0]["satisfaction"] = None
    assert _predict(live_server.url, rows).status_code == 200


def test_routing_key_is_optional_but_must_be_a_string_or_integer(live_server, rv):
    rows, _ = _rows(2)
    del rows[0]["customer_id"]
    assert _predict(live_server.url, rows).status_code == 200
    assert _wait_logged(rv, 2) == 2
    stored = [r for chunk in rv.store.predictions.iter_rows("churn") for r in chunk]
    assert sorted(str(r["routing_key"]) for r in stored) == sorted(["None", rows[1]["customer_id"]])
    rows[1]["customer_id"] = {"id": 3}
    response = _predict(live_server.url, rows)
    assert response.status_code == 422
    assert response.json()["problems"][0] == {
        "row": 1,
        "column": "customer_id",
        "message": "the routing key must be a string or integer, got an object",
    }


def test_a_routing_key_sent_as_a_json_float_is_a_422_that_says_what_to_send(live_server):
    rows, _ = _rows(3)
    rows[0]["customer_id"] = 42.0
    rows[1]["customer_id"] = 2**70  # an integer: JSON parsing keeps it only as a float
    rows[2]["customer_id"] = 1.5
    response = _predict(live_server.url, rows)
    assert response.status_code == 422
    problems = response.json()["problems"]
    assert [(p["row"], p["column"]) for p in problems] == [(i, "customer_id") for i in range(3)]
    assert problems[0]["message"] == (
        "the routing key must be a string or integer, got 42.0 (a number with a decimal point "
        'or an exponent): send 42 or "42"'
    )
    assert "an integer beyond 64 bits" in problems[1]["message"]
    assert "send the key as a string" in problems[1]["message"]
    assert problems[2]["message"].endswith("got the number 1.5")
    # what the messages say to send is answered
    rows[0]["customer_id"], rows[1]["customer_id"], rows[2]["customer_id"] = 42, str(2**70), "x"
    assert _predict(live_server.url, rows).status_code == 200


def test_unknown_deployment_is_404(live_server):
    rows, _ = _rows(1)
    response = httpx.post(
        f"{live_server.url}/v1/deployments/nope/predict", json={"instances": rows}
    )
    assert response.status_code == 404
    assert "nope" in response.json()["error"]


def test_unseen_category_and_out_of_range_are_answered_and_counted(live_server):
    rows, _ = _rows(2)
    rows[0]["contract"] = "pay-as-you-go"
    rows[1]["age"] = 150
    before_cat = _metric(
        live_server.url,
        "relevo_data_quality_findings_total",
        column="contract",
        finding="unseen_category",
    )
    before_rng = _metric(
        live_server.url, "relevo_data_quality_findings_total", column="age", finding="out_of_range"
    )
    response = _predict(live_server.url, rows)
    assert response.status_code == 200
    assert (
        _metric(
            live_server.url,
            "relevo_data_quality_findings_total",
            column="contract",
            finding="unseen_category",
        )
        == before_cat + 1
    )
    assert (
        _metric(
            live_server.url,
            "relevo_data_quality_findings_total",
            column="age",
            finding="out_of_range",
        )
        == before_rng + 1
    )


def test_quality_findings_can_be_rejected(deployed, server_settings, spawn_server):
    url = spawn_server(
        server_settings.model_copy(
            update={"reject_unseen_categories": True, "reject_out_of_range": True}
        )
    )
    rows, _ = _rows(2)
    rows[0]["contract"] = "pay-as-you-go"
    rows[1]["age"] = 150
    response = _predict(url, rows)
    assert response.status_code == 422
    assert {(p["row"], p["column"]) for p in response.json()["problems"]} == {
        (0, "contract"),
        (1, "age"),
    }


def test_every_answered_row_is_logged(live_server, rv):
    rows, _ = _rows(40, seed=5)
    answered = []
    for start in range(0, 40, 10):
        response = _predict(live_server.url, rows[start : start + 10])
        answered.extend(response.json()["predictions"])
    _predict(live_server.url, [{"age": 1}])  # rejected: not logged
    assert _wait_logged(rv, 40) == 40
    time.sleep(0.3)
    stored = [r for chunk in rv.store.predictions.iter_rows("churn") for r in chunk]
    assert len(stored) == 40
    by_id = {r["id"]: r for r in stored}
    for answer, row in zip(answered, rows, strict=True):
        record = by_id[answer["id"]]
        assert record["routing_key"] == row["customer_id"]
        assert record["model_name"] == "churn" and record["model_version"] == 1
        assert record["latency_ms"] > 0
        import orjson

        # the model's columns; the routing key is stored in its own column only
        assert orjson.loads(record["features"]) == {
            k: v for k, v in row.items() if k != "customer_id"
        }
        assert orjson.loads(record["output"])["probability"] == answer["probability"]


def test_metrics_count_what_was_sent(live_server):
    url = live_server.url
    ok_before = _metric(url, "relevo_requests_total", deployment="churn", status="200")
    bad_before = _metric(url, "relevo_requests_total", deployment="churn", status="422")
    rows_before = _metric(url, "relevo_predictions_total", deployment="churn")
    rows, _ = _rows(9)
    for start in range(0, 9, 3):
        assert _predict(url, rows[start : start + 3]).status_code == 200
    assert _predict(url, [{"age": "x"}]).status_code == 422
    assert _metric(url, "relevo_requests_total", deployment="churn", status="200") == ok_before + 3
    assert _metric(url, "relevo_requests_total", deployment="churn", status="422") == bad_before + 1
    assert _metric(url, "relevo_predictions_total", deployment="churn") == rows_before + 9
    text = httpx.get(f"{url}/metrics").text
    for name in (
        "relevo_request_latency_seconds_bucket",
        "relevo_prediction_log_queue_rows",
        "relevo_prediction_log_rows_written_total",
        "relevo_process_cpu_seconds",
        "relevo_process_resident_memory_bytes",
    ):
        assert name in text


def test_health_and_readiness(live_server):
    assert httpx.get(f"{live_server.url}/healthz").json()["live"] is True
    ready = httpx.get(f"{live_server.url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "deployments": {"churn": "churn:1"}}


def test_health_and_metrics_answer_while_a_lone_request_waits_on_its_model(
    live_server, monkeypatch
):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from relevo.registry.flavors.sklearn import EstimatorModel

    url = live_server.url
    entered, release = threading.Event(), threading.Event()
    real = EstimatorModel.predict

    def stuck(self, frame):  # a slow model: it answers once the test lets it
        entered.set()
        release.wait(60)
        return real(self, frame)

    monkeypatch.setattr(EstimatorModel, "predict", stuck)
    before = _metric(url, "relevo_request_latency_seconds_count", deployment="churn")
    rows, _ = _rows(1)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(_predict, url, rows, timeout=90)
        try:
            assert entered.wait(30)
            # the model's call holds no probe: on the event loop it would hold them all
            health = httpx.get(f"{url}/healthz", timeout=10)
            metrics = httpx.get(f"{url}/metrics", timeout=10)
        finally:
            release.set()
        answer = pending.result()
    assert health.status_code == 200 and metrics.status_code == 200
    assert answer.status_code == 200 and len(answer.json()["predictions"]) == 1
    after = _metric(url, "relevo_request_latency_seconds_count", deployment="churn")
    assert after == before + 1


def test_openapi_documents_the_predict_endpoint(live_server):
    spec = httpx.get(f"{live_server.url}/openapi.json").json()
    assert "/v1/deployments/{name}/predict" in spec["paths"]


def test_a_deployment_change_by_another_process_is_picked_up(live_server, rv, churn_frame):
    simple = Pipeline([("model", LogisticRegression(max_iter=500))])
    numeric = ["age", "tenure_months", "support_calls"]
    simple.fit(churn_frame[numeric], churn_frame["churned"])
    v2 = rv.registry.register("churn", simple, churn_frame[[*numeric, "churned"]], target="churned")
    rows, frame = _rows(1)
    rv.deployments.deploy("churn", v2.ref, key="customer_id")
    started = time.monotonic()
    while time.monotonic() - started < 5:
        answer = _predict(live_server.url, rows).json()["predictions"][0]
        if answer["model"] == "churn:2":
            break
        time.sleep(0.05)
    assert answer["model"] == "churn:2"
    assert time.monotonic() - started < 2.5
    expected = simple.predict_proba(frame[numeric])[0, 1]
    assert answer["probability"] == pytest.approx(expected, rel=1e-12)


def test_tokens_are_enforced(deployed, server_settings, spawn_server):
    url = spawn_server(
        server_settings.model_copy(update={"api_token": "api-1", "admin_token": "adm-1"})
    )
    if True:
        rows, _ = _rows(1)
        missing = _predict(url, rows)
        assert missing.status_code == 401
        assert "bearer" in missing.json()["error"].lower()
        assert _predict(url, rows, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert _predict(url, rows, headers={"Authorization": "Bearer api-1"}).status_code == 200
        assert _predict(url, rows, headers={"Authorization": "Bearer adm-1"}).status_code == 200
        body = {"model": "churn:1", "key": "customer_id"}
        put = httpx.put(
            f"{url}/v1/deployments/churn", json=body, headers={"Authorization": "Bearer api-1"}
        )
        assert put.status_code == 403
        assert "admin" in put.json()["error"]
        assert httpx.put(f"{url}/v1/deployments/churn", json=body).status_code == 401
        put = httpx.put(
            f"{url}/v1/deployments/churn", json=body, headers={"Authorization": "Bearer adm-1"}
        )
        assert put.status_code == 200 and put.json()["revision"] == 2
        assert httpx.get(f"{url}/healthz").status_code == 200  # health stays open


def test_bodies_over_the_limit_are_413(deployed, server_settings, spawn_server):
    import gzip

    url = spawn_server(server_settings.model_copy(update={"max_body_mb": 0.01}))
    rows, _ = _rows(200)
    big = _predict(url, rows)
    assert big.status_code == 413
    assert "RELEVO_MAX_BODY_MB" in big.json()["error"]
    assert _predict(url, rows[:2]).status_code == 200
    bomb = gzip.compress(b"{" + b" " * 5_000_000 + b"}")
    v2 = httpx.post(
        f"{url}/v2/models/churn/infer", content=bomb, headers={"Content-Encoding": "gzip"}
    )
    assert v2.status_code == 413
    assert "inflates" in v2.json()["error"]


def test_a_model_that_raises_is_a_counted_json_500(live_server, rv, monkeypatch):
    from relevo.registry.flavors.sklearn import EstimatorModel

    def explode(self, frame):
        raise RuntimeError("model exploded")

    monkeypatch.setattr(EstimatorModel, "predict", explode)
    before = _metric(live_server.url, "relevo_requests_total", deployment="churn", status="500")
    rows, _ = _rows(1)
    response = _predict(live_server.url, rows)
    assert response.status_code == 500
    assert response.json()["error"] == "internal error"  # the details are in the server log
    assert "model exploded" not in response.text
    after = _metric(live_server.url, "relevo_requests_total", deployment="churn", status="500")
    assert after == before + 1


def test_a_row_the_model_answers_nan_for_has_no_label_and_is_logged_so(
    live_server, rv, nan_for_the_old
):
    """NaN >= 0.5 is false: such a row was answered `{"probability": null, "label": 0}`, a
    customer said to stay on no evidence. It has no label now; the rest of the request is
    answered, and the log keeps the row as answered (monitoring counts it in `nan_outputs`)."""
    nan_for_the_old(90)
    rows, _ = _rows(3, seed=4)
    rows = [{**row, "age": 30} for row in rows]
    rows[1]["age"] = 95
    response = _predict(live_server.url, rows)
    assert response.status_code == 200, response.text
    answers = response.json()["predictions"]
    assert answers[1]["probability"] is None and answers[1]["label"] is None
    for k in (0, 2):
        assert 0 <= answers[k]["probability"] <= 1
        assert answers[k]["label"] == int(answers[k]["probability"] >= 0.5)
    assert _wait_logged(rv, 3) == 3
    stored = {r["id"]: r for chunk in rv.store.predictions.iter_rows("churn") for r in chunk}
    assert json.loads(stored[answers[1]["id"]]["output"]) == {"probability": None, "label": None}


def test_a_column_missing_from_every_row_is_one_problem_with_a_typo_hint(live_server):
    rows, _ = _rows(30)
    for row in rows:
        row["tenure_month"] = row.pop("tenure_months")
    response = _predict(live_server.url, rows)
    assert response.status_code == 422
    problems = response.json()["problems"]
    assert problems == [
        {
            "column": "tenure_months",
            "message": "required column is missing from every row "
            "(the row has 'tenure_month': a typo?)",
        }
    ]


def test_integer_columns_refuse_fractions(live_server):
    rows, _ = _rows(2)
    rows[0]["age"] = 42.0  # a whole number written as a float is fine
    rows[1]["age"] = 42.5
    response = _predict(live_server.url, rows)
    assert response.status_code == 422
    assert response.json()["problems"] == [
        {"row": 1, "column": "age", "message": "expected a whole number, got 42.5"}
    ]


def test_a_changed_artifact_answers_503_with_the_reason(
    deployed, rv, server_settings, spawn_server
):
    stored = rv.registry.artifacts.path(deployed.artifact_path)
    with stored.open("ab") as fh:
        fh.write(b"\0")
    url = spawn_server(server_settings)
    rows, _ = _rows(1)
    response = _predict(url, rows)
    assert response.status_code == 503
    assert response.json()["error"] == "deployment 'churn' cannot serve: its model failed to load"
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 503  # the only deployment cannot serve
    assert "changed since it was registered" in ready.json()["failing"]["churn"]
