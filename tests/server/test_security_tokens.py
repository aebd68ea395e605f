"""Issue 18 item 3: once any token is set, no change goes through without one; and what each
token opens, over real HTTP, for every combination of tokens set and sent."""

from __future__ import annotations

import httpx
import pytest

from relevo.datasets import make_churn
from relevo.serving.records import frame_to_records

API, ADMIN = "api-1", "adm-1"
SENT = {"none": None, "wrong": "nope", "api": API, "admin": ADMIN}

# tokens set -> {token sent: (predict status, change status)}
MATRIX = {
    "no tokens": (
        {},
        {"none": (200, 200), "wrong": (200, 200)},
    ),
    "API token only": (
        {"api_token": API},
        {"none": (401, 401), "wrong": (401, 401), "api": (200, 200)},
    ),
    "admin token only": (
        {"admin_token": ADMIN},
        {"none": (200, 401), "wrong": (200, 401), "admin": (200, 200)},
    ),
    "both tokens": (
        {"api_token": API, "admin_token": ADMIN},
        {"none": (401, 401), "wrong": (401, 401), "api": (200, 403), "admin": (200, 200)},
    ),
}


def _headers(sent: str) -> dict[str, str]:
    token = SENT[sent]
    return {"Authorization": f"Bearer {token}"} if token else {}


@pytest.mark.parametrize("case", list(MATRIX))
def test_what_each_token_opens(case, deployed, rv, server_settings, spawn_server):
    tokens, expected = MATRIX[case]
    url = spawn_server(server_settings.model_copy(update=tokens))
    rows = frame_to_records(make_churn(1, seed=2).drop(columns=["churned"]))
    for sent, (predict_status, change_status) in expected.items():
        predict = httpx.post(
            f"{url}/v1/deployments/churn/predict",
            json={"instances": rows},
            headers=_headers(sent),
        )
        assert predict.status_code == predict_status, (case, sent, predict.text)
        change = httpx.put(
            f"{url}/v1/deployments/churn",
            json={"model": "churn:1"},
            headers=_headers(sent),
        )
        assert change.status_code == change_status, (case, sent, change.text)
        reads = httpx.get(f"{url}/v1/deployments", headers=_headers(sent))
        assert reads.status_code == predict_status, (case, sent)


def test_with_only_the_api_token_set_nobody_anonymous_can_create_a_deployment(
    deployed, rv, server_settings, spawn_server
):
    url = spawn_server(server_settings.model_copy(update={"api_token": API}))
    anonymous = httpx.put(f"{url}/v1/deployments/other", json={"model": "churn:1"})
    assert anonymous.status_code == 401
    assert "bearer" in anonymous.json()["error"].lower()
    assert [d.name for d in rv.deployments.list()] == ["churn"]
    allowed = httpx.put(
        f"{url}/v1/deployments/other",
        json={"model": "churn:1"},
        headers={"Authorization": f"Bearer {API}"},
    )
    assert allowed.status_code == 200
    assert sorted(d.name for d in rv.deployments.list()) == ["churn", "other"]


@pytest.mark.parametrize(
    ("tokens", "sent", "details"),
    [
        ({}, "none", True),
        ({"api_token": API}, "none", False),
        ({"api_token": API}, "wrong", False),
        ({"api_token": API}, "api", True),
        ({"admin_token": ADMIN}, "none", False),
        ({"admin_token": ADMIN}, "admin", True),
        ({"api_token": API, "admin_token": ADMIN}, "api", True),
    ],
)
def test_readiness_details_need_a_token_once_tokens_are_set(
    deployed, server_settings, spawn_server, tokens, sent, details
):
    url = spawn_server(server_settings.model_copy(update=tokens))
    ready = httpx.get(f"{url}/readyz", headers=_headers(sent))
    assert ready.status_code == 200  # probes work without a token
    if details:
        assert ready.json() == {"ready": True, "deployments": {"churn": "churn:1"}}
    else:
        assert ready.json() == {"ready": True}


def test_a_token_set_from_a_file_with_its_newline_accepts_the_token(
    deployed, server_settings, spawn_server, monkeypatch
):
    """A token read from a file or a secret ends in a newline, which no client sends: every
    correct client got 401. A blank token is no token (it locked everyone out)."""
    from relevo.settings import Settings

    url = spawn_server(server_settings.model_copy(update={"api_token": "s3cret-token"}))
    monkeypatch.setenv("RELEVO_API_TOKEN", "s3cret-token\n")
    monkeypatch.setenv("RELEVO_ADMIN_TOKEN", "  ")
    read = Settings()
    assert read.api_token == "s3cret-token" and read.admin_token is None
    answer = httpx.get(f"{url}/v1/deployments", headers={"Authorization": "Bearer s3cret-token"})
    assert answer.status_code == 200, answer.text


CROSS_SITE = {
    "Origin": "https://evil.example",
    "Sec-Fetch-Site": "cross-site",
    "Content-Type": "text/plain;charset=UTF-8",  # a "simple" request: no CORS preflight
}


def test_a_page_of_another_site_cannot_change_a_server_without_tokens(live_server, rv):
    """Without tokens the server trusts whoever reaches it, but a web page in that person's
    browser reaches it too: a cross-site form post silenced every alert for a year and stored
    labels. Clients that are not browsers send no Origin and go through as before."""
    url = live_server.url
    silence = b'{"deployment": "churn", "duration_s": 31536000, "reason": "x"}'
    refused = httpx.post(f"{url}/v1/alerts/silences", content=silence, headers=CROSS_SITE)
    assert refused.status_code == 403 and "cross-site" in refused.json()["error"]
    assert httpx.get(f"{url}/v1/alerts/silences").json()["silences"] == []
    rows = frame_to_records(make_churn(1, seed=3).drop(columns=["churned"]))
    body = {"instances": rows}
    predict = httpx.post(f"{url}/v1/deployments/churn/predict", json=body, headers=CROSS_SITE)
    assert predict.status_code == 403
    # the server's own pages (its OpenAPI page) and clients without Origin are answered
    own = {"Origin": url}
    assert httpx.post(f"{url}/v1/deployments/churn/predict", json=body, headers=own).is_success
    assert httpx.post(f"{url}/v1/deployments/churn/predict", json=body).is_success


def test_behind_a_proxy_the_proxys_own_pages_may_still_change_state(live_server):
    """A proxy that rewrites Host (nginx's default `proxy_pass http://upstream`) says the
    browser's host in X-Forwarded-Host: the proxy's own origin is not another site."""
    rows = frame_to_records(make_churn(1, seed=3).drop(columns=["churned"]))
    url = f"{live_server.url}/v1/deployments/churn/predict"
    proxied = {
        "Host": "relevo",
        "X-Forwarded-Host": "relevo.example",
        "Origin": "https://relevo.example",
    }
    assert httpx.post(url, json={"instances": rows}, headers=proxied).is_success
    other = {**proxied, "Origin": "https://evil.example"}
    assert httpx.post(url, json={"instances": rows}, headers=other).status_code == 403
    # a proxy that forwards no Origin (curl through it) is no browser: answered
    assert httpx.post(url, json={"instances": rows}, headers={"Host": "relevo"}).is_success
