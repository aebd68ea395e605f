"""Issue 18 items 2 and 4: a body is read only after its token is checked, through one bounded
reader, and the rows of one request are bounded, on every route that reads a body."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from rawhttp import announce_body

from relevo.datasets import make_churn
from relevo.server.app import create_fastapi_app
from relevo.server.background import BackgroundServer
from relevo.serving.records import frame_to_records

GIB = 1024**3
TOKENS = {"api_token": "api-1", "admin_token": "adm-1"}
ADMIN = {"Authorization": "Bearer adm-1"}

#: every route that reads a request body
BODY_ROUTES = [
    ("POST", "/v1/deployments/churn/predict"),
    ("PUT", "/v1/deployments/churn"),
    ("POST", "/v2/models/churn/infer"),
    ("POST", "/v2/models/churn/versions/1/infer"),
]


def _rows(n: int) -> list[dict]:
    return frame_to_records(make_churn(n, seed=3).drop(columns=["churned"]))


@pytest.fixture
def guarded(deployed, server_settings, spawn_server) -> str:
    return spawn_server(server_settings.model_copy(update=TOKENS))


@pytest.fixture
def fastapi_only(deployed, server_settings) -> Iterator[str]:
    """The FastAPI app alone (no fast lane in front): its own predict route answers."""
    settings = server_settings.model_copy(update={**TOKENS, "max_body_mb": 0.01})
    app, _ = create_fastapi_app(settings)
    server = BackgroundServer(settings, app=app)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_a_gigabyte_body_without_a_token_is_refused_before_it_is_read(guarded, method, path):
    # the client announces 1 GiB and sends 64 KiB of it: the answer can only come before the
    # server read the body (a server that reads first would wait for the rest forever)
    answer = announce_body(guarded, method, path, declared=GIB, send=64 * 1024)
    assert answer.status == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.headers["connection"] == "close"  # the rest of the body is never read


def test_the_fastapi_predict_route_checks_the_token_first_and_bounds_the_body(fastapi_only):
    path = "/v1/deployments/churn/predict"
    answer = announce_body(fastapi_only, "POST", path, declared=GIB, send=64 * 1024)
    assert answer.status == 401
    too_big = httpx.post(fastapi_only + path, json={"instances": _rows(200)}, headers=ADMIN)
    assert too_big.status_code == 413
    assert "RELEVO_MAX_BODY_MB" in too_big.json()["error"]
    ok = httpx.post(fastapi_only + path, json={"instances": _rows(2)}, headers=ADMIN)
    assert ok.status_code == 200
    assert len(ok.json()["predictions"]) == 2


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_an_announced_body_over_the_limit_is_413_before_it_is_read(guarded, method, path):
    answer = announce_body(guarded, method, path, declared=GIB, send=1024, headers=ADMIN)
    assert answer.status == 413
    assert b"RELEVO_MAX_BODY_MB" in answer.body
    assert answer.headers["connection"] == "close"


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_a_streamed_body_over_the_limit_is_413(
    deployed, server_settings, spawn_server, method, path
):
    # no Content-Length (chunked): the reader stops at the limit
    url = spawn_server(server_settings.model_copy(update={"max_body_mb": 0.01}))
    chunks = iter([b"[" + b" " * 8191] + [b" " * 8192] * 4)
    response = httpx.request(method, url + path, content=chunks)
    assert response.status_code == 413
    assert "RELEVO_MAX_BODY_MB" in response.json()["error"]


def test_the_default_body_limit_is_16_mb(live_server):
    answer = announce_body(
        live_server.url,
        "POST",
        "/v1/deployments/churn/predict",
        declared=16 * 1024 * 1024 + 1,
        send=1024,
    )
    assert answer.status == 413
    assert b"16,777,216 bytes" in answer.body


def test_more_rows_than_max_rows_is_413_before_validation(deployed, server_settings, spawn_server):
    url = spawn_server(server_settings.model_copy(update={"max_rows": 50}))
    predict = f"{url}/v1/deployments/churn/predict"
    # 51 rows that would each fail validation: the limit answers first, without that work
    response = httpx.post(predict, json={"instances": [{}] * 51})
    assert response.status_code == 413
    body = response.json()
    assert "RELEVO_MAX_ROWS" in body["error"] and "at most 50" in body["error"]
    assert body["problems"] == [
        {"column": "instances", "message": "51 rows; send at most 50 per request"}
    ]
    assert httpx.post(predict, json={"instances": _rows(50)}).status_code == 200


def test_the_default_row_limit_is_10_000(live_server):
    response = httpx.post(
        f"{live_server.url}/v1/deployments/churn/predict", json={"instances": [{}] * 10_001}
    )
    assert response.status_code == 413
    assert "at most 10,000" in response.json()["error"]


def test_a_compressed_json_predict_body_is_inflated_within_the_limit(live_server):
    """docs/security.md: the body limit holds "also after gzip/deflate". The JSON API ignored
    Content-Encoding: a gzip body was "not valid JSON", an unknown encoding passed unseen."""
    import gzip
    import zlib

    import orjson

    url = f"{live_server.url}/v1/deployments/churn/predict"
    rows = frame_to_records(make_churn(2, seed=3).drop(columns=["churned"]))
    body = orjson.dumps({"instances": rows})
    json_type = {"Content-Type": "application/json"}
    for coding, packed in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        answer = httpx.post(url, content=packed, headers={**json_type, "Content-Encoding": coding})
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"]) == 2
    odd = httpx.post(url, content=body, headers={**json_type, "Content-Encoding": "br"})
    assert odd.status_code == 400 and "unsupported Content-Encoding" in odd.text
    bomb = gzip.compress(b" " * (17 * 1024 * 1024))  # 17 MB of spaces in 17 KB
    burst = httpx.post(url, content=bomb, headers={**json_type, "Content-Encoding": "gzip"})
    assert burst.status_code == 413, burst.text


#: every other route that reads a body, with one it takes (predict and infer: tests above, V2's)
CHANGE_ROUTES = [
    ("PUT", "/v1/deployments/churn", {"model": "churn:1"}),
    ("POST", "/v1/deployments/churn/promote", {"reason": "gzip"}),
    ("POST", "/v1/deployments/churn/rollback", {"reason": "gzip"}),
    ("PUT", "/v1/deployments/churn/monitoring", {}),
    ("POST", "/v1/deployments/churn/feedback", {"labels": [{"id": "p-1", "label": 1}]}),
    ("POST", "/v1/alerts/silences", {"deployment": "churn", "duration_s": 3600}),
]


def test_every_route_that_reads_a_body_is_tested_with_content_encoding(live_server):
    spec = httpx.get(f"{live_server.url}/openapi.json").json()
    with_body = {
        (method.upper(), path.replace("{name}", "churn").replace("{version}", "1"))
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    }
    tested = {(method, path) for method, path, _ in CHANGE_ROUTES}
    assert with_body - tested == {
        ("POST", "/v1/deployments/churn/predict"),
        ("POST", "/v2/models/churn/infer"),
        ("POST", "/v2/models/churn/versions/1/infer"),
    }


@pytest.mark.parametrize(("method", "path", "payload"), CHANGE_ROUTES)
def test_a_compressed_body_is_inflated_on_every_route_within_the_limit(
    deployed, server_settings, spawn_server, method, path, payload
):
    """A gzip body was inflated on predict and infer only: elsewhere it was read as raw bytes,
    "not valid JSON: it is not UTF-8 text", and an unknown encoding passed unseen."""
    import gzip
    import zlib

    import orjson

    url = spawn_server(server_settings.model_copy(update={"max_body_mb": 0.1})) + path
    body = orjson.dumps(payload)
    json_type = {"Content-Type": "application/json"}
    plain = httpx.request(method, url, content=body, headers=json_type)
    assert plain.status_code < 500, plain.text
    for coding, packed in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        headers = {**json_type, "Content-Encoding": coding}
        answer = httpx.request(method, url, content=packed, headers=headers)
        assert answer.status_code == plain.status_code, answer.text
        assert "not valid JSON" not in answer.text
        if plain.status_code >= 400:  # the same refusal of the same request
            assert answer.json() == plain.json()
    odd = httpx.request(method, url, content=body, headers={**json_type, "Content-Encoding": "br"})
    assert odd.status_code == 400
    assert odd.json()["error"] == "unsupported Content-Encoding 'br': use gzip, deflate or none"
    bomb = gzip.compress(b" " * (200 * 1024))  # 200 KB of spaces in a few hundred bytes
    burst = httpx.request(
        method, url, content=bomb, headers={**json_type, "Content-Encoding": "gzip"}
    )
    assert burst.status_code == 413, burst.text
    assert "inflates to more than 104,857 bytes (RELEVO_MAX_BODY_MB)" in burst.json()["error"]


def test_a_gzip_body_of_several_members_is_read_whole(live_server):
    """A gzip body of two members (two compressed files concatenated, as `gzip -d` reads
    them) was cut to its first: a JSON document split across them was refused, and a second
    document after a first complete one was dropped without a word."""
    import gzip

    import orjson

    url = f"{live_server.url}/v1/deployments/churn/predict"
    rows = frame_to_records(make_churn(3, seed=3).drop(columns=["churned"]))
    body = orjson.dumps({"instances": rows})
    gz = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    split = gzip.compress(body[:40]) + gzip.compress(body[40:])
    answer = httpx.post(url, content=split, headers=gz)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 3
    extra = gzip.compress(body) + gzip.compress(b'{"instances": []}')
    refused = httpx.post(url, content=extra, headers=gz)
    assert refused.status_code == 400, refused.text  # two documents are no JSON body
    many = b"".join(gzip.compress(b" ") for _ in range(65)) + gzip.compress(body)
    too_many = httpx.post(url, content=many, headers=gz)
    assert too_many.status_code == 400
    assert too_many.json()["error"] == "the request body has more than 64 gzip members; send one"


def test_an_empty_body_marked_gzip_is_an_empty_body(deployed, server_settings, spawn_server):
    """`POST .../promote` with no body and `Content-Encoding: gzip` answered 400 "not valid
    gzip data: it is truncated", where the same request without the header was taken."""
    base = spawn_server(server_settings)
    url = f"{base}/v1/deployments/churn/rollback"
    plain = httpx.post(url)
    marked = httpx.post(url, headers={"Content-Encoding": "gzip"})
    assert marked.status_code == plain.status_code, marked.text
    assert marked.json() == plain.json()
