"""Rollout control over real HTTP behind the admin token: PUT a canary, promote, roll back,
read the history; promote and rollback are store state, so a restarted server keeps them."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta

import httpx
import pytest
from sklearn.base import clone

from relevo.datasets import CHURN_FEATURES, CHURN_TARGET
from relevo.errors import InvalidInputError
from relevo.server.admin import deploy_body
from relevo.server.background import BackgroundServer

ADMIN = {"Authorization": "Bearer admin-secret"}
API = {"Authorization": "Bearer api-secret"}


def _small(rv, churn_pipeline, churn_frame):
    other = clone(churn_pipeline).set_params(model__C=0.01)
    other.fit(churn_frame[CHURN_FEATURES], churn_frame[CHURN_TARGET])
    return rv.registry.register("churn-small", other, churn_frame, target="churned")


def _serving(url: str) -> list[str]:
    return httpx.get(f"{url}/v1/deployments/churn/status", headers=ADMIN).json()["serving"]


def test_canary_promote_restart_rollback_over_http(
    rv, deployed, churn_pipeline, churn_frame, server_settings
):
    small = _small(rv, churn_pipeline, churn_frame)
    settings = server_settings.model_copy(
        update={"admin_token": "admin-secret", "api_token": "api-secret"}
    )
    server = BackgroundServer(settings)
    url = server.start()
    try:
        base = f"{url}/v1/deployments/churn"
        put = httpx.put(
            base, json={"model": small.ref, "weight": 0.25, "reason": "try it"}, headers=ADMIN
        )
        assert put.status_code == 200, put.text
        assert put.json()["challenger"] == small.ref and put.json()["weight"] == 0.25
        assert _serving(url) == [deployed.ref, small.ref]

        status = httpx.get(f"{base}/status", headers=ADMIN).json()
        assert [m["model"] for m in status["models"]] == [deployed.ref, small.ref]
        # what this replica routes by: the revision the PUT made
        assert status["serving_revision"] == put.json()["revision"] == status["revision"]

        promoted = httpx.post(f"{base}/promote", headers=ADMIN)
        assert promoted.status_code == 200, promoted.text
        assert promoted.json()["model"] == small.ref and promoted.json()["previous"] == deployed.ref
    finally:
        server.stop()

    # a restarted server serves what was promoted: it is store state
    server = BackgroundServer(settings)
    url = server.start()
    try:
        server.wait_until_serving("churn", small.ref)
        base = f"{url}/v1/deployments/churn"
        back = httpx.post(f"{base}/rollback", json={"reason": "AUC lower"}, headers=ADMIN)
        assert back.status_code == 200 and back.json()["model"] == deployed.ref
        server.wait_until_serving("churn", deployed.ref)

        history = httpx.get(f"{base}/history", headers=ADMIN).json()["events"]
        assert [e["action"] for e in history] == ["deploy", "deploy", "promote", "rollback"]
        assert [e["actor"] for e in history[1:]] == ["token:admin"] * 3
        assert history[1]["reason"] == "try it" and history[3]["reason"] == "AUC lower"
    finally:
        server.stop()


def test_rollout_control_needs_the_admin_token_before_any_body(
    rv, deployed, churn_pipeline, churn_frame, server_settings, spawn_server
):
    settings = server_settings.model_copy(
        update={"admin_token": "admin-secret", "api_token": "api-secret"}
    )
    url = spawn_server(settings)
    base = f"{url}/v1/deployments/churn"
    paths = (("POST", "/promote"), ("POST", "/rollback"), ("GET", "/history"), ("GET", "/status"))
    for method, path in paths:
        anonymous = httpx.request(method, base + path)
        assert anonymous.status_code == 401 and "token" in anonymous.json()["error"]
        weak = httpx.request(method, base + path, headers=API)
        assert weak.status_code == 403
        # a read is not called a change: the answer says what the API token may not do
        assert weak.json()["error"].startswith("this request needs the admin token")
        assert "status and history" in weak.json()["error"]
    # a bad body is a 422 naming the field, in relevo's error shape
    bad = httpx.post(f"{base}/rollback", json={"why": 1}, headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["problems"][0]["column"] == "body"
    none = httpx.post(f"{base}/promote", headers=ADMIN)
    assert none.status_code == 409 and "no challenger" in none.json()["error"]
    unknown = httpx.get(f"{url}/v1/deployments/nope/history", headers=ADMIN)
    assert unknown.status_code == 404
    wrong = httpx.put(base, json={"model": "churn:1", "strategy": "blue"}, headers=ADMIN)
    assert wrong.status_code == 422 and wrong.json()["problems"][0]["column"] == "strategy"


def _admin_url(server_settings, spawn_server) -> str:
    return spawn_server(server_settings.model_copy(update={"admin_token": "admin-secret"}))


def test_concurrent_promotes_of_the_revision_seen_make_one_step(
    rv, deployed, churn_pipeline, churn_frame, server_settings, spawn_server
):
    """Four operators promote what they all saw (`{"revision": N}`): one step is made, the
    other three are refused with 409 naming the change; without the revision each promote is
    a move from the state it finds."""
    small = _small(rv, churn_pipeline, churn_frame)
    base = f"{_admin_url(server_settings, spawn_server)}/v1/deployments/churn"
    put = httpx.put(
        base, json={"model": small.ref, "steps": [5, 25, 50, 100], "manual": True}, headers=ADMIN
    )
    assert put.status_code == 200, put.text
    seen = put.json()["revision"]
    barrier, answers = threading.Barrier(4), []

    def promote() -> None:
        barrier.wait()
        answers.append(
            httpx.post(f"{base}/promote", json={"revision": seen}, headers=ADMIN, timeout=30)
        )

    threads = [threading.Thread(target=promote) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 409, 409, 409], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 409).json()["error"]
    # refused before the move (it is at another revision) or at the save (it changed meanwhile)
    assert f"is at revision {seen + 1}, not {seen}" in refused or (
        f"revision {seen} -> {seen + 1}" in refused
    )
    state = httpx.get(f"{base}/status", headers=ADMIN).json()
    assert state["weight"] == 0.25 and state["revision"] == seen + 1
    bad = httpx.post(f"{base}/promote", json={"revision": "7"}, headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["problems"][0]["column"] == "revision"


def test_a_put_body_is_checked_as_sent_not_converted(
    rv, deployed, server_settings, spawn_server, churn_pipeline, churn_frame
):
    small = _small(rv, churn_pipeline, churn_frame)
    base = f"{_admin_url(server_settings, spawn_server)}/v1/deployments/churn"
    bad = {
        "steps": {"model": small.ref, "steps": [True, 100]},
        "weight": {"model": small.ref, "weight": "0.1"},
        "mirror": {"model": small.ref, "strategy": "basic", "mirror": 0},
        "key": {"model": deployed.ref, "key": ""},
    }
    for field, body in bad.items():
        answer = httpx.put(base, json=body, headers=ADMIN)
        assert answer.status_code == 422, (field, answer.text)
        assert field in answer.text
    state = httpx.get(base, headers=ADMIN).json()
    assert state["model"] == deployed.ref and state["strategy"] == "basic"
    # a whole number where a float is asked is fine: JSON has one kind of number
    shadow = {"model": small.ref, "strategy": "shadow", "mirror": 1}
    ok = httpx.put(base, json=shadow, headers=ADMIN)
    assert ok.status_code == 200 and ok.json()["mirror"] == 1.0


def test_whole_number_steps_written_as_floats_are_steps():
    """JSON has one kind of number: `5.0` is the step 5 (Python's json writes computed steps
    so); 5.5, "5" and true are refused, each naming its place."""
    body = json.loads(json.dumps({"model": "churn:2", "steps": [5.0, 25.0, 50.0, 100.0]}))
    assert deploy_body(body).steps == [5, 25, 50, 100]
    for bad in (5.5, "5", True):
        with pytest.raises(InvalidInputError) as refused:
            deploy_body({"model": "churn:2", "steps": [bad, 100]})
        assert refused.value.problems[0].column == "steps.0"


def test_the_openapi_document_describes_the_bodies_the_routes_take(
    rv, deployed, server_settings, spawn_server, churn_pipeline, churn_frame
):
    """A client built from /openapi.json (or a validating proxy) can send a canary, a shadow
    and a promote from the revision seen: the documented schemas accept what the routes take,
    and an empty promote body is allowed, as the route allows it."""
    import jsonschema

    small = _small(rv, churn_pipeline, churn_frame)
    url = _admin_url(server_settings, spawn_server)
    paths = httpx.get(f"{url}/openapi.json").json()["paths"]

    def body_of(path: str, method: str) -> tuple[dict, bool]:
        request = paths[path][method]["requestBody"]
        return request["content"]["application/json"]["schema"], request["required"]

    put_schema, put_required = body_of("/v1/deployments/{name}", "put")
    canary = {"model": small.ref, "steps": [5, 25, 50, 100], "manual": True, "reason": "trees"}
    for body in (
        canary,
        {"model": small.ref, "strategy": "shadow", "mirror": 0.2},
        {"model": small.ref, "weight": 0.05, "key": None},
    ):
        jsonschema.validate(body, put_schema)  # the document allows it...
    assert put_required
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"model": small.ref, "colour": "blue"}, put_schema)
    answer = httpx.put(f"{url}/v1/deployments/churn", json=canary, headers=ADMIN)
    assert answer.status_code == 200, answer.text  # ...and the route takes it

    for action in ("promote", "rollback"):
        schema, required = body_of(f"/v1/deployments/{{name}}/{action}", "post")
        assert not required  # the body may be left out
        jsonschema.validate({"reason": "gates pass", "revision": 7}, schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"reason": "x", "colour": "blue"}, schema)
    seen = answer.json()["revision"]
    promoted = httpx.post(
        f"{url}/v1/deployments/churn/promote", json={"revision": seen}, headers=ADMIN
    )
    assert promoted.status_code == 200, promoted.text


def test_a_rollouts_step_and_bake_are_set_per_deployment_over_http(
    rv, deployed, server_settings, spawn_server, churn_pipeline, churn_frame
):
    small = _small(rv, churn_pipeline, churn_frame)
    base = f"{_admin_url(server_settings, spawn_server)}/v1/deployments/churn"
    body = {"model": small.ref, "rollout": True, "min_step_rows": 2000, "min_step_seconds": 600}
    put = httpx.put(base, json={**body, "bake_seconds": 7200}, headers=ADMIN)
    assert put.status_code == 200, put.text
    state = httpx.get(base, headers=ADMIN).json()
    assert (state["min_step_rows"], state["min_step_seconds"], state["bake_seconds"]) == (
        2000,
        600.0,
        7200.0,
    )
    refused = httpx.put(base, json={**body, "min_step_rows": -1}, headers=ADMIN)
    assert refused.status_code == 422 and "min_step_rows" in refused.text


def test_min_step_rows_past_a_32_bit_integer_is_a_422_and_changes_nothing(
    rv, deployed, server_settings, spawn_server, churn_pipeline, churn_frame
):
    # PostgreSQL keeps it in a 32-bit column: 2**31 answered 500 there
    small = _small(rv, churn_pipeline, churn_frame)
    base = f"{_admin_url(server_settings, spawn_server)}/v1/deployments/churn"
    body = {"model": small.ref, "rollout": True, "min_step_rows": 2**31}
    refused = httpx.put(base, json=body, headers=ADMIN)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"] == "min_step_rows: 2147483648 is more than 2,147,483,647 rows"
    assert rv.deployments.get("churn").revision == 1
    most = httpx.put(base, json={**body, "min_step_rows": 2**31 - 1}, headers=ADMIN)
    assert most.status_code == 200, most.text
    assert most.json()["min_step_rows"] == 2**31 - 1


def test_the_status_over_http_says_what_the_gates_say_now(
    rv, deployed, server_settings, spawn_server, churn_pipeline, churn_frame
):
    small = _small(rv, churn_pipeline, churn_frame)
    base = f"{_admin_url(server_settings, spawn_server)}/v1/deployments/churn"
    assert httpx.get(f"{base}/status", headers=ADMIN).json()["decision"] is None
    put = httpx.put(base, json={"model": small.ref, "weight": 0.1}, headers=ADMIN)
    assert put.status_code == 200, put.text
    decision = httpx.get(f"{base}/status", headers=ADMIN).json()["decision"]
    assert decision["move"] == "hold" and "error_rate" in decision["reason"]
    assert [g["gate"] for g in decision["gates"]] == [
        "error_rate",
        "latency_p99",
        "drift",
        "label_metric",
    ]
    # a shadow answers no rows: only the gate that measures it (its labelled rows) is shown,
    # not "0 errors in 0 rows" of a challenger scoring every request
    put = httpx.put(base, json={"model": small.ref, "strategy": "shadow"}, headers=ADMIN)
    assert put.status_code == 200, put.text
    decision = httpx.get(f"{base}/status", headers=ADMIN).json()["decision"]
    assert decision["move"] == "hold" and "shadow" in decision["reason"]
    assert [g["gate"] for g in decision["gates"]] == ["label_metric"]


def test_a_whole_min_step_rows_written_as_a_float_is_that_many_rows_over_http(
    rv, deployed, server_settings, spawn_server, churn_pipeline, churn_frame
):
    """JSON clients write a computed 50 as `50.0`: it is the count 50, stored and answered as
    an integer; 50.5 rows is refused with a 422 naming the field, and changes nothing."""
    small = _small(rv, churn_pipeline, churn_frame)
    base = f"{_admin_url(server_settings, spawn_server)}/v1/deployments/churn"
    body = {"model": small.ref, "rollout": True, "min_step_rows": 50.0}
    put = httpx.put(base, content=json.dumps(body), headers=ADMIN)
    assert put.status_code == 200, put.text
    assert put.json()["min_step_rows"] == 50 and type(put.json()["min_step_rows"]) is int
    assert rv.deployments.get("churn").min_step_rows == 50
    revision = put.json()["revision"]

    refused = httpx.put(base, json={**body, "min_step_rows": 50.5}, headers=ADMIN)
    assert refused.status_code == 422, refused.text
    assert [p["column"] for p in refused.json()["problems"]] == ["min_step_rows"]
    assert httpx.get(base, headers=ADMIN).json()["revision"] == revision


def test_the_status_over_http_says_a_promotion_bakes_and_until_when(
    rv, deployed, server_settings, spawn_server, churn_pipeline, churn_frame
):
    small = _small(rv, churn_pipeline, churn_frame)
    base = f"{_admin_url(server_settings, spawn_server)}/v1/deployments/churn"
    put = httpx.put(
        base, json={"model": small.ref, "weight": 0.1, "bake_seconds": 900}, headers=ADMIN
    )
    assert put.status_code == 200, put.text
    promoted = httpx.post(f"{base}/promote", headers=ADMIN).json()
    status = httpx.get(f"{base}/status", headers=ADMIN).json()
    decision = status["decision"]
    until = datetime.fromisoformat(promoted["promoted_at"]) + timedelta(seconds=900)
    assert decision["move"] == "none" and datetime.fromisoformat(decision["bake_until"]) == until
    assert decision["reason"].startswith("baking until ")
    assert decision["reason"].endswith(f"rolls back to {deployed.ref}")


def test_a_nul_in_a_deploys_key_or_a_reason_is_a_422_and_changes_nothing(rv, deployed, live_server):
    # PostgreSQL cannot hold a NUL in text: each answered 500 there (SQLite stored them)
    base = f"{live_server.url}/v1/deployments/churn"
    key = httpx.put(base, json={"model": "churn:1", "key": "customer\x00id"})
    assert key.status_code == 422, key.text
    assert key.json()["error"].startswith("key: 'customer\\x00id' is not a column name")
    deploy = httpx.put(base, json={"model": "churn:1", "reason": "why\x00"})
    assert deploy.status_code == 422, deploy.text
    assert deploy.json()["error"] == "reason: a text without NUL characters"
    for action in ("promote", "rollback"):
        answer = httpx.post(f"{base}/{action}", json={"reason": "why\x00"})
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"] == "reason: a text without NUL characters"
    assert [e.action for e in rv.deployments.history("churn")] == ["deploy"]
    assert rv.deployments.get("churn").key_column == "customer_id"
