"""`GET /v1/deployments/{name}/drift` over real HTTP: JSON, the HTML report, errors, tokens."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from relevo.datasets import make_churn
from relevo.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "monitoring" / "drift"))
from traffic import write_traffic

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def test_drift_over_http(rv, deployed, churn_pipeline, live_server) -> None:
    frame = make_churn(2000, seed=31, ageing=6)
    write_traffic(rv, deployed, churn_pipeline, frame, NOW - timedelta(minutes=20))
    url = f"{live_server.url}/v1/deployments/churn/drift"
    answer = httpx.get(url, params={"since": "1h"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["drifted_features"] == ["age"] and body["model"] == deployed.ref
    assert body["baseline"] == "reference" and body["prediction"]["evaluable"]
    page = httpx.get(url, params={"since": "1h", "format": "html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Drift of churn" in page.text
    pinned = httpx.get(url, params={"since": "1h", "model": deployed.ref})
    assert pinned.json()["drifted_features"] == ["age"]


def test_drift_errors_over_http(deployed, live_server) -> None:
    base = f"{live_server.url}/v1/deployments"
    unknown = httpx.get(f"{base}/nope/drift")
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]
    empty = httpx.get(f"{base}/churn/drift", params={"since": "1h"})
    assert empty.status_code == 404 and "no prediction" in empty.json()["error"]
    bad = httpx.get(f"{base}/churn/drift", params={"baseline": "yesterday"})
    assert bad.status_code == 422 and bad.json()["problems"][0]["field"] == "baseline"
    since = httpx.get(f"{base}/churn/drift", params={"since": "tomorrow"})
    assert since.status_code == 422 and since.json()["problems"][0]["field"] == "since"
    far = httpx.get(f"{base}/churn/drift", params={"since": "99999999999w"})  # was a 500
    assert far.status_code == 422 and far.json()["problems"][0]["field"] == "since"


def test_drift_needs_a_token_when_one_is_set(deployed, server_settings, spawn_server) -> None:
    settings = server_settings.model_copy(update={"api_token": "read-me", "admin_token": "boss"})
    url = spawn_server(settings) + "/v1/deployments/churn/drift"
    assert httpx.get(url).status_code == 401
    for token in ("read-me", "boss"):
        answer = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 404  # let in; no traffic profiled yet
    assert isinstance(settings, Settings)
