"""Validation over HTTP: bounded work for hostile requests, the server answerable meanwhile."""

from __future__ import annotations

import threading

import httpx

from relevo.datasets import CHURN_FEATURES, make_churn
from relevo.serving.records import frame_to_records


def test_many_rows_of_near_miss_keys_get_a_bounded_422_and_healthz_answers(
    deployed, server_settings, spawn_server
):
    # issue 18 item 5: 68k rows, each with 100 keys that nearly name a column, used to run a
    # typo hint per row and per column and block the event loop for 37 s
    url = spawn_server(server_settings.model_copy(update={"max_body_mb": 100, "max_rows": 100_000}))
    near = b",".join(b'"age%02d":0' % k for k in range(100))
    body = b'{"instances":[' + b",".join([b"{" + near + b"}"] * 68_000) + b"]}"
    result: dict[str, httpx.Response] = {}

    def big() -> None:
        result["big"] = httpx.post(f"{url}/v1/deployments/churn/predict", content=body, timeout=300)

    thread = threading.Thread(target=big)
    thread.start()
    answered_during = 0
    while thread.is_alive():
        health = httpx.get(f"{url}/healthz", timeout=300)
        assert health.status_code == 200
        if thread.is_alive():
            answered_during += 1
    thread.join()
    response = result["big"]
    assert response.status_code == 422
    problems = response.json()["problems"]
    # every column is missing from every row: one problem per column, not one per row
    assert len(problems) == len(CHURN_FEATURES)
    assert {p["column"] for p in problems} == set(CHURN_FEATURES)
    assert all("missing from every row" in p["message"] for p in problems)
    age = next(p for p in problems if p["column"] == "age")
    assert "a typo?" in age["message"]  # the hint is still given, once
    assert answered_during >= 1


def test_a_missing_column_and_a_wrong_type_in_other_rows_are_both_answered(live_server):
    frame = make_churn(3, seed=9)
    rows = frame_to_records(frame[["customer_id", *CHURN_FEATURES]])
    del rows[0]["age"]
    rows[1]["age"] = "forty"
    rows[2]["age"] = "41"  # numeric text is a number
    response = httpx.post(
        f"{live_server.url}/v1/deployments/churn/predict", json={"instances": rows}
    )
    assert response.status_code == 422
    assert response.json()["problems"] == [
        {"row": 0, "column": "age", "message": "required column is missing"},
        {"row": 1, "column": "age", "message": "expected a number, got 'forty'"},
    ]


def test_a_nan_literal_is_explained_in_the_users_terms(live_server):
    body = b'{"instances": [{"age": NaN}]}'
    response = httpx.post(f"{live_server.url}/v1/deployments/churn/predict", content=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert "NaN and Infinity are not JSON numbers; send null" in error
    assert "unexpected character" not in error


def test_a_number_too_large_for_a_float_is_named_as_such(live_server):
    body = b'{"instances": [{"age": 1e400}]}'
    response = httpx.post(f"{live_server.url}/v1/deployments/churn/predict", content=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("a number in the request body is too large (line 1 column")
    assert "not valid JSON" not in error


def _churn_row() -> dict:
    return frame_to_records(make_churn(1, seed=9)[["customer_id", *CHURN_FEATURES]])[0]


def test_an_integer_beyond_64_bits_gets_a_422_naming_it_not_another_numbers_score(live_server):
    # the model would have scored -2**63 (the int64 cast wraps) and the log kept 1e20 beside it
    url = f"{live_server.url}/v1/deployments/churn/predict"
    for value in (1e20, 2**63, "1e20"):
        row = _churn_row()
        row["tenure_months"] = value
        answer = httpx.post(url, json={"instances": [_churn_row(), row]})
        assert answer.status_code == 422, answer.text
        [problem] = answer.json()["problems"]
        assert (problem["row"], problem["column"]) == (1, "tenure_months")
        assert "too large for a 64-bit integer" in problem["message"]


def test_a_body_the_parser_cannot_read_is_refused_saying_why(live_server):
    url = f"{live_server.url}/v1/deployments/churn/predict"
    body = httpx.Request("POST", "/", json={"instances": [_churn_row()]}).content
    for bad, why in [
        (b"\xef\xbb\xbf" + body, "byte order mark"),  # what many Windows tools write
        (body + b" {}", "something follows the JSON document"),
        (body[:-5], "ends before the JSON document does"),
    ]:
        answer = httpx.post(url, content=bad, headers={"content-type": "application/json"})
        assert answer.status_code == 400
        assert why in answer.json()["error"]
