"""Issue 12 item 6: every endpoint reads a JSON body whatever its Content-Type, checks the token
before the body, and answers errors in relevo's one shape (V2 routes in the protocol's)."""

from __future__ import annotations

import httpx
import orjson
import pytest

TOKENS = {"api_token": "api-1", "admin_token": "adm-1"}


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_deploy_body_is_json_whatever_its_content_type(live_server, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = httpx.put(
        f"{live_server.url}/v1/deployments/churn",
        content=orjson.dumps({"model": "churn:1", "key": "customer_id"}),
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["revision"] == 2


def test_the_token_is_checked_before_the_body_is_judged(deployed, server_settings, spawn_server):
    url = spawn_server(server_settings.model_copy(update=TOKENS))
    for body in (b"", b"{not json", b'{"x": 1}'):
        response = httpx.put(
            f"{url}/v1/deployments/churn", content=body, headers={"Content-Type": "text/plain"}
        )
        assert response.status_code == 401
        assert set(response.json()) == {"error"}


@pytest.mark.parametrize(
    ("body", "status", "problems"),
    [
        (b"{not json", 400, None),
        (b"", 400, None),
        (b"[1]", 422, [("body", "expected an object, got list")]),
        (b"{}", 422, [("model", "Field required")]),
        (
            b'{"modle": "churn:1"}',
            422,
            [("model", "Field required"), ("modle", "Extra inputs are not permitted")],
        ),
        (b'{"model": 3}', 422, [("model", "Input should be a valid string")]),
        (b'{"model": "churn:1", "key": []}', 422, [("key", "Input should be a valid string")]),
    ],
)
def test_bad_deploy_bodies_answer_relevo_errors(live_server, body, status, problems):
    response = httpx.put(f"{live_server.url}/v1/deployments/churn", content=body)
    assert response.status_code == status, response.text
    answer = response.json()
    assert "detail" not in answer and answer["error"]
    if problems is not None:
        got = [(p["column"], p["message"]) for p in answer["problems"]]
        assert got == problems


def test_unknown_paths_and_methods_answer_relevo_errors(live_server):
    missing = httpx.get(f"{live_server.url}/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Not Found"}
    method = httpx.delete(f"{live_server.url}/v1/deployments/churn")
    assert method.status_code == 405
    assert method.json() == {"error": "Method Not Allowed"}


def test_v2_errors_keep_the_protocol_shape(live_server):
    unknown = httpx.post(f"{live_server.url}/v2/models/nope/infer", content=b"{}")
    assert unknown.status_code == 404
    assert set(unknown.json()) == {"error"}
    bad = httpx.post(f"{live_server.url}/v2/models/churn/infer", content=b"{not json")
    assert bad.status_code == 400
    assert set(bad.json()) == {"error"}
