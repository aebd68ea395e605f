"""Issue 18 item 8: no internals in answers (a generic 500 with a request id, the details in the
log), readiness details behind a token and never the database's user, host or password, and
path parameters that cannot exist refused without asking the store."""

from __future__ import annotations

import logging

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from relevo.datasets import make_churn
from relevo.errors import UnavailableError
from relevo.serving.records import frame_to_records

LEAKY = 'connection to server at "db.internal" (10.1.2.3), port 5432 failed: password=hunter2'
DB_URL = "postgresql://svc_user:hunter2@db.internal:5432/prod"


def _rows(n: int = 1) -> list[dict]:
    return frame_to_records(make_churn(n, seed=8).drop(columns=["churned"]))


def _leaks(text: str) -> list[str]:
    return [s for s in ("db.internal", "10.1.2.3", "hunter2", "svc_user", "SELECT") if s in text]


def test_a_model_that_raises_answers_a_generic_500_with_a_request_id(
    live_server, monkeypatch, caplog
):
    from relevo.registry.flavors.sklearn import EstimatorModel

    def explode(self, frame):
        raise RuntimeError(f"model exploded near {LEAKY}")

    monkeypatch.setattr(EstimatorModel, "predict", explode)
    caplog.set_level(logging.ERROR, logger="relevo.server")
    response = httpx.post(
        f"{live_server.url}/v1/deployments/churn/predict", json={"instances": _rows()}
    )
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal error"
    assert set(body) == {"error", "request_id"}
    assert _leaks(response.text) == [] and "exploded" not in response.text
    # the operator finds the details in the log under that id
    logged = [r for r in caplog.records if body["request_id"] in r.getMessage()]
    assert logged and logged[0].exc_info is not None
    assert "model exploded" in str(logged[0].exc_info[1])


def test_a_database_failure_does_not_show_the_database(live_server, monkeypatch):
    from relevo.store.models import ModelRepository

    def down(self, name=None):
        raise OperationalError("SELECT * FROM model_versions", {}, Exception(LEAKY))

    monkeypatch.setattr(ModelRepository, "list", down)
    response = httpx.get(f"{live_server.url}/v1/models")
    assert response.status_code == 500
    assert response.json()["error"] == "internal error"
    assert _leaks(response.text) == []


def test_readiness_never_shows_the_database_url(live_server, monkeypatch):
    from relevo.store import Store

    def unreachable(self):
        raise UnavailableError(f"the database at {DB_URL} does not answer")

    monkeypatch.setattr(Store, "ping", unreachable)
    ready = httpx.get(f"{live_server.url}/readyz")
    assert ready.status_code == 503
    assert ready.json()["problems"] == ["the database does not answer"]
    assert _leaks(ready.text) == []
    assert httpx.get(f"{live_server.url}/v2/health/ready").status_code == 503  # one "ready"


def test_a_failing_deployment_shows_its_reason_only_to_a_token_holder(
    deployed, rv, server_settings, spawn_server
):
    stored = rv.registry.artifacts.path(deployed.artifact_path)
    with stored.open("ab") as fh:
        fh.write(b"\0")
    url = spawn_server(server_settings.model_copy(update={"api_token": "t"}))
    token = {"Authorization": "Bearer t"}
    predict = httpx.post(
        f"{url}/v1/deployments/churn/predict", json={"instances": _rows()}, headers=token
    )
    assert predict.status_code == 503
    assert predict.json()["error"] == "deployment 'churn' cannot serve: its model failed to load"
    assert str(stored.parent) not in predict.text
    anonymous = httpx.get(f"{url}/readyz")
    assert anonymous.status_code == 503
    assert anonymous.json() == {"ready": False}
    detailed = httpx.get(f"{url}/readyz", headers=token).json()
    assert "changed since it was registered" in detailed["failing"]["churn"]


def test_readiness_names_a_failing_deployment_without_its_artifact_path(
    deployed, rv, server_settings, spawn_server, relevo_home
):
    # without tokens anyone reads readiness: it named the artifact's path under the home
    stored = rv.registry.artifacts.path(deployed.artifact_path)
    with stored.open("ab") as fh:
        fh.write(b"\0")
    url = spawn_server(server_settings)
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 503
    assert ready.json()["failing"] == {
        "churn": "artifact has changed since it was registered; refusing to load it"
    }
    assert str(relevo_home) not in ready.text and deployed.artifact_sha256 not in ready.text
    # with both tokens the API token reads the same words; the admin token the log's
    both = server_settings.model_copy(update={"api_token": "api", "admin_token": "adm"})
    url = spawn_server(both)
    api = httpx.get(f"{url}/readyz", headers={"Authorization": "Bearer api"})
    assert api.json()["failing"] == ready.json()["failing"]
    admin = httpx.get(f"{url}/readyz", headers={"Authorization": "Bearer adm"})
    assert str(stored) in admin.json()["failing"]["churn"]


def test_readiness_shows_no_text_of_a_library_that_fails_to_load_a_model(
    deployed, server_settings, spawn_server, monkeypatch, relevo_home
):
    from relevo.registry.flavors.sklearn import SklearnFlavor

    def broken(self, path, options):
        raise OSError(f"cannot read {path}: {LEAKY}")

    monkeypatch.setattr(SklearnFlavor, "load", broken)
    ready = httpx.get(f"{spawn_server(server_settings)}/readyz")
    assert ready.status_code == 503
    assert ready.json()["failing"] == {
        "churn": "its model failed to load (the server log says why)"
    }
    assert str(relevo_home) not in ready.text and _leaks(ready.text) == []


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/deployments/" + "d" * 300, 404),
        ("GET", "/v1/deployments/a%20b", 404),
        ("GET", "/v1/deployments/a%00b", 404),
        ("PUT", "/v1/deployments/" + "d" * 300, 422),
        ("PUT", "/v1/deployments/a%00b", 422),
        ("GET", "/v1/models/" + "m" * 300 + "/versions/1", 404),
        ("GET", "/v1/models/a%00b/versions/1", 404),
    ],
)
def test_names_that_cannot_exist_are_refused_without_the_store(
    deployed, server_settings, spawn_server, monkeypatch, method, path, status
):
    # the alert evaluator reads the store in the background on its own schedule: off here, so
    # every store call the spies see is the request's
    url = spawn_server(server_settings.model_copy(update={"monitor_interval_s": 0}))
    from relevo.store.deployments import DeploymentRepository
    from relevo.store.models import ModelRepository

    asked: list[str] = []

    def spy(name):
        def record(self, *args, **kwargs):
            asked.append(name)
            raise AssertionError("the store was asked")

        return record

    for repo, attr in [
        (DeploymentRepository, "get"),
        (DeploymentRepository, "save"),
        (ModelRepository, "get"),
    ]:
        monkeypatch.setattr(repo, attr, spy(f"{repo.__name__}.{attr}"))
    response = httpx.request(method, url + path, json={"model": "churn:1"})
    assert response.status_code == status, response.text
    assert asked == []
    body = response.json()
    assert "error" in body and "SQL" not in response.text and "INSERT" not in response.text
    if status == 422:
        assert body["problems"][0]["column"] == "name"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/models/churn/versions/11996964656577137383082819584", 404),
        ("/v1/models/churn/versions/9223372036854775808", 404),
        ("/v1/models/churn/versions/0", 404),
        ("/v1/models/churn/versions/abc", 422),
        ("/v1/models/churn/versions/-1", 422),
    ],
)
def test_versions_out_of_range_are_404_or_422_never_500(live_server, path, status):
    response = httpx.get(live_server.url + path)
    assert response.status_code == status, response.text
    body = response.json()
    assert "detail" not in body
    if status == 422:
        assert body["problems"] == [
            {"column": "version", "message": body["problems"][0]["message"]}
        ]
        assert "whole number" in body["problems"][0]["message"]


def test_a_model_version_out_of_range_in_a_body_is_404(live_server):
    response = httpx.put(
        f"{live_server.url}/v1/deployments/churn",
        json={"model": "churn:99999999999999999999999999"},
    )
    assert response.status_code == 404
    assert "churn:99999999999999999999999999" in response.json()["error"]


def test_a_version_past_a_32_bit_integer_is_404_on_every_store(live_server):
    # PostgreSQL's version column is a 32-bit integer: 2**31 answered 500 there (the database
    # refused the value), wherever a version is named
    url = live_server.url
    shown = httpx.get(f"{url}/v1/models/churn/versions/2147483648")
    assert shown.status_code == 404, shown.text
    assert shown.json()["error"] == "model 'churn' has no version 2147483648"
    deployed = httpx.put(f"{url}/v1/deployments/churn", json={"model": "churn:2147483648"})
    assert deployed.status_code == 404, deployed.text
    assert "churn:2147483648 not found" in deployed.json()["error"]
    drift = httpx.get(f"{url}/v1/deployments/churn/drift", params={"model": "churn:2147483648"})
    assert drift.status_code == 404, drift.text
    assert httpx.get(f"{url}/v1/models/churn/versions/1").status_code == 200
