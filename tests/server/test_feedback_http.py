"""Ground truth and performance over real HTTP: labels for the ids the predict answer gave,
replacements and unknown ids in the answer, a bad label a 422 naming its row, the API token."""

from __future__ import annotations

import json

import httpx
import pytest

from relevo.datasets import CHURN_FEATURES, CHURN_ID, CHURN_TARGET, make_churn
from relevo.feedback.service import PerformanceService


def _predict(url: str, frame, headers=None) -> list[str]:
    rows = frame[[CHURN_ID, *CHURN_FEATURES]].astype(object)
    body = {"instances": rows.where(rows.notna(), None).to_dict("records")}
    answer = httpx.post(f"{url}/v1/deployments/churn/predict", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    return [p["id"] for p in answer.json()["predictions"]]


def _wait_logged(rv, n: int) -> None:
    import time

    deadline = time.monotonic() + 20
    while rv.store.predictions.count("churn") < n and time.monotonic() < deadline:
        time.sleep(0.05)


def test_feedback_and_performance_over_http(rv, live_server):
    frame = make_churn(200, seed=4)
    ids = _predict(live_server.url, frame)
    _wait_logged(rv, len(ids))
    truth = frame[CHURN_TARGET].tolist()
    url = f"{live_server.url}/v1/deployments/churn"
    labels = [{"id": i, "label": y} for i, y in zip(ids, truth, strict=True)]
    sent = httpx.post(f"{url}/feedback", json={"labels": [*labels, {"id": "x1", "label": 1}]})
    assert sent.status_code == 200, sent.text
    body = sent.json()
    assert body["accepted"] == 200 and body["replaced"] == 0 and body["unknown_ids"] == ["x1"]
    again = httpx.post(f"{url}/feedback", json={"labels": labels[:5]}).json()
    assert again["accepted"] == 5 and again["replaced"] == 5

    bad = httpx.post(
        f"{url}/feedback", json={"labels": [labels[0], {"id": ids[1], "label": "maybe"}]}
    )
    assert bad.status_code == 422
    assert bad.json()["problems"][0]["row"] == 1
    assert "maybe" in bad.json()["problems"][0]["message"]
    malformed = httpx.post(f"{url}/feedback", json={"labels": [{"id": ids[0]}]})
    assert malformed.status_code == 422 and malformed.json()["problems"][0]["row"] == 0

    report = httpx.get(f"{url}/performance", params={"window": "1d"})
    assert report.status_code == 200, report.text
    (model,) = report.json()["models"]
    assert model["model"] == "churn:1" and model["labelled"] == 200
    assert model["windows"][-1]["metrics"]["roc_auc"]["count"] == 200
    # the segments where the model is wrong, their range ends as JSON numbers
    found = httpx.get(f"{url}/performance", params={"window": "1d", "segments": "true"})
    assert found.status_code == 200, found.text
    expected = PerformanceService(rv).performance("churn", "1d", None, True).to_dict()
    assert found.json()["models"] == json.loads(json.dumps(expected["models"]))
    ranges = [
        f
        for s in found.json()["models"][0]["segments"]
        for f in s["filters"]
        if f["kind"] == "range"
    ]
    assert ranges and all(isinstance(f["low"] or f["high"], float) for f in ranges)
    odd = httpx.get(f"{url}/performance", params={"format": "xml"})  # was JSON, 200
    assert odd.status_code == 422 and "format" in odd.text, odd.text
    page = httpx.get(f"{url}/performance", params={"format": "html"})
    assert page.status_code == 200 and "<svg" in page.text
    assert "<script" not in page.text and "src=" not in page.text  # offline: nothing fetched
    assert httpx.get(f"{url}/performance", params={"window": "soon"}).status_code == 422
    assert httpx.get(f"{live_server.url}/v1/deployments/nope/performance").status_code == 404


def test_feedback_needs_the_api_token(rv, deployed, server_settings, spawn_server):
    settings = server_settings.model_copy(update={"api_token": "api-secret"})
    url = spawn_server(settings)
    frame = make_churn(3, seed=2)
    api = {"Authorization": "Bearer api-secret"}
    ids = _predict(url, frame, api)
    _wait_logged(rv, 3)
    body = {"labels": [{"id": ids[0], "label": 1}]}
    assert httpx.post(f"{url}/v1/deployments/churn/feedback", json=body).status_code == 401
    ok = httpx.post(f"{url}/v1/deployments/churn/feedback", json=body, headers=api)
    assert ok.status_code == 200 and ok.json()["accepted"] == 1
    assert httpx.get(f"{url}/v1/deployments/churn/performance").status_code == 401


@pytest.mark.parametrize(
    ("param", "value"), [("window", "99999999999999w"), ("since", "200000w"), ("since", "36526d")]
)
def test_a_performance_span_past_a_century_is_a_422_naming_it(live_server, param, value):
    # was a 500: a timedelta overflowed, or `since` reached before the year 1
    url = f"{live_server.url}/v1/deployments/churn/performance"
    answer = httpx.get(url, params={param: value})
    assert answer.status_code == 422, answer.text
    assert answer.json()["problems"] == [
        {"field": param, "message": "a duration of at most 100 years (36525d)"}
    ]
    assert httpx.get(url, params={param: "36525d"}).status_code == 200


def test_an_id_with_a_nul_is_a_422_naming_its_row(rv, live_server):
    # PostgreSQL cannot hold a NUL in text: the upload answered 500 there (SQLite: "unknown")
    ids = _predict(live_server.url, make_churn(2, seed=4))
    _wait_logged(rv, 2)
    url = f"{live_server.url}/v1/deployments/churn/feedback"
    labels = [{"id": ids[0], "label": 1}, {"id": ids[1][:-1] + "\x00", "label": 0}]
    refused = httpx.post(url, json={"labels": labels})
    assert refused.status_code == 422, refused.text
    assert refused.json()["problems"] == [
        {"row": 1, "column": "id", "message": f"expected a prediction id, got {labels[1]['id']!r}"}
    ]
    assert rv.store.labels.count("churn") == 0  # nothing stored
    assert httpx.post(url, json={"labels": labels[:1]}).json()["accepted"] == 1


def test_a_refused_label_is_named_not_sent_back(live_server):
    # each refused id and label was repeated whole, twice (error and problems): 10 MB of ids
    # answered 20 MB
    big_id, big_label = "a" * 1_000_000, "y" * 1_000_000
    labels = [{"id": big_id, "label": 1}] * 5 + [{"id": "0" * 32, "label": big_label}] * 5
    url = f"{live_server.url}/v1/deployments/churn/feedback"
    refused = httpx.post(url, json={"labels": labels})
    assert refused.status_code == 422
    assert len(refused.content) < 10_000
    problems = refused.json()["problems"]
    assert problems[0] == {
        "row": 0,
        "column": "id",
        "message": f"expected a prediction id, got {repr(big_id)[:60]}...",
    }
    assert problems[5] == {
        "row": 5,
        "column": "label",
        "message": f"expected one of the model's classes (0, 1), got {repr(big_label)[:60]}...",
    }
