"""V2 inference under a canary: a client pinning a version gets that version, and a challenger
whose outputs differ from the champion's (other labels) never breaks a V2 answer."""

from __future__ import annotations

import time

import httpx
import numpy as np
import orjson
import pytest
from sklearn.base import clone
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from v2_inputs import json_inputs, post

from relevo.datasets import (
    CHURN_CATEGORICAL,
    CHURN_FEATURES,
    CHURN_ID,
    CHURN_NUMERIC,
    CHURN_TARGET,
    make_churn,
)


def _until_both_served(url: str) -> None:
    """Until this server has loaded the challenger (it follows the store within seconds)."""
    deadline = time.monotonic() + 30
    while len(httpx.get(f"{url}/v1/deployments/churn/status").json()["serving"]) < 2:
        assert time.monotonic() < deadline, "the server never loaded the challenger"
        time.sleep(0.05)


def _canary_of(rv, ref: str, server_settings, spawn_server):
    """A server whose `churn` runs `ref` as a canary at 0.5, once it serves both: its URL, 50
    rows and their V2 request."""
    url = spawn_server(server_settings)
    rv.deployments.deploy("churn", ref, weight=0.5, actor="test")
    rows = make_churn(50, seed=11)[[CHURN_ID, *CHURN_FEATURES]]
    _until_both_served(url)
    return url, rows, {"inputs": json_inputs(rows)}


def test_a_canary_challenger_with_other_labels_answers_no_v2_rows(
    rv, deployed, churn_pipeline, churn_frame, server_settings, spawn_server
):
    """docs/deployments.md: the challenger may be any registered model. Here the same pipeline
    trained on the target as text ("no"/"yes"): the JSON API splits the rows, V2 answered 500
    and now has the champion answer them all."""
    frame = churn_frame.copy()
    frame["churned"] = np.where(frame[CHURN_TARGET] == 1, "yes", "no")
    other = clone(churn_pipeline).fit(frame[CHURN_FEATURES], frame["churned"])
    challenger = rv.registry.register("churn-text", other, frame, target="churned")
    url, rows, body = _canary_of(rv, challenger.ref, server_settings, spawn_server)
    response = post(f"{url}/v2/models/churn/infer", body)
    assert response.status_code == 200, response.text  # was 500: the labels made no tensor
    v1 = httpx.post(
        f"{url}/v1/deployments/churn/predict",
        content=orjson.dumps({"instances": rows.to_dict(orient="records")}),
        headers={"Content-Type": "application/json"},
        timeout=30,
    ).json()["predictions"]
    assert {p["model"] for p in v1} == {"churn:1", challenger.ref}  # the JSON API splits them
    # a V2 answer has one tensor per output for all its rows: the champion answers them all
    assert "parameters" not in response.json()
    assert response.json()["model_version"] == "1"


def test_a_versioned_infer_under_a_canary_is_answered_by_that_version(
    rv, deployed, churn_pipeline, churn_frame, server_settings, spawn_server
):
    """POST /v2/models/churn/versions/1/infer under a canary of churn:2: the client pinned
    version 1, and every row is answered by it (a canary split them)."""
    other = clone(churn_pipeline).set_params(model__C=0.01)
    other.fit(churn_frame[CHURN_FEATURES], churn_frame[CHURN_TARGET])
    v2 = rv.registry.register("churn", other, churn_frame, target="churned")
    url, rows, body = _canary_of(rv, v2.ref, server_settings, spawn_server)
    doc = post(f"{url}/v2/models/churn/infer", body).json()
    # unpinned: split, each row's model named in one string (the spec's parameter values are
    # strings, numbers and booleans)
    models = doc["parameters"]["models"]
    assert isinstance(models, str) and len(models.split(",")) == len(rows)
    assert set(models.split(",")) == {"churn:1", v2.ref}
    pinned = post(f"{url}/v2/models/churn/versions/1/infer", body).json()
    assert pinned["model_version"] == "1"
    assert "parameters" not in pinned, pinned["parameters"]
    unpinned = post(f"{url}/v2/models/churn/infer", body).json()
    pinned_p = np.array(pinned["outputs"][0]["data"])
    assert not np.allclose(pinned_p, np.array(unpinned["outputs"][0]["data"]))
    frame = rows[CHURN_FEATURES]
    np.testing.assert_allclose(pinned_p, churn_pipeline.predict_proba(frame)[:, 1], atol=1e-9)


def _with_tickets(frame):
    """The churn rows with a column the champion never saw: tickets opened last month."""
    out = frame.copy()
    out["tickets"] = (out["support_calls"].fillna(0) * 2 + out["age"].fillna(40) % 3).astype(int)
    return out


def _tickets_model(rv, churn_pipeline, churn_frame):
    """A challenger trained on the churn features plus `tickets` (a new model name)."""
    frame = _with_tickets(churn_frame)
    numeric = [*CHURN_NUMERIC, "tickets"]
    other = clone(churn_pipeline).set_params(
        preprocess__transformers=[
            ("numeric", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), CHURN_CATEGORICAL),
        ]
    )
    other.fit(frame[[*CHURN_FEATURES, "tickets"]], frame[CHURN_TARGET])
    version = rv.registry.register("churn-tickets", other, frame, target="churned")
    return other, version


def test_a_canary_challenger_with_a_new_column_is_fed_it_over_v2(
    rv, deployed, churn_pipeline, churn_frame, server_settings, spawn_server
):
    """docs/deployments.md: a challenger may need a column the champion lacks. V2 refused the
    tensor (not in the champion's signature), so every challenger row fell back to the
    champion. Now the tensor reaches the challenger; the champion ignores it."""
    other, challenger = _tickets_model(rv, churn_pipeline, churn_frame)
    url, rows, body = _canary_of(rv, challenger.ref, server_settings, spawn_server)
    rows = _with_tickets(rows)
    tickets = {"name": "tickets", "datatype": "INT64", "shape": [len(rows)]}
    body["inputs"].append({**tickets, "data": rows["tickets"].tolist()})
    response = post(f"{url}/v2/models/churn/infer", body)
    assert response.status_code == 200, response.text
    doc = response.json()
    models = np.array(doc["parameters"]["models"].split(","))
    assert set(models) == {"churn:1", challenger.ref}, models
    got = np.array(doc["outputs"][0]["data"])
    theirs = other.predict_proba(rows[[*CHURN_FEATURES, "tickets"]])[:, 1]
    ours = churn_pipeline.predict_proba(rows[CHURN_FEATURES])[:, 1]
    mine = models == challenger.ref
    np.testing.assert_allclose(got[mine], theirs[mine], atol=1e-9)
    np.testing.assert_allclose(got[~mine], ours[~mine], atol=1e-9)

    # the column stays optional: without it the challenger's rows fall back to the champion
    body["inputs"].pop()
    response = post(f"{url}/v2/models/churn/infer", body)
    assert response.status_code == 200, response.text
    assert "parameters" not in response.json()
    np.testing.assert_allclose(np.array(response.json()["outputs"][0]["data"]), ours, atol=1e-9)

    # a tensor named like no model's column is still refused, naming it
    body["inputs"].append({**tickets, "name": "tickts", "data": rows["tickets"].tolist()})
    response = post(f"{url}/v2/models/churn/infer", body)
    assert response.status_code == 400
    assert "tickts" in response.text


def test_a_shadow_with_a_new_column_scores_v2_rows(
    rv, deployed, churn_pipeline, churn_frame, server_settings, spawn_server
):
    """The same for a shadow: it was fed no V2 row it could score (every one a shadow error)."""
    other, challenger = _tickets_model(rv, churn_pipeline, churn_frame)
    url = spawn_server(server_settings)
    rv.deployments.deploy("churn", challenger.ref, strategy="shadow", actor="test")
    _until_both_served(url)
    rows = _with_tickets(make_churn(40, seed=12)[[CHURN_ID, *CHURN_FEATURES]])
    body = {"inputs": json_inputs(rows)}
    body["inputs"].append(
        {"name": "tickets", "datatype": "INT64", "shape": [40], "data": rows["tickets"].tolist()}
    )
    response = post(f"{url}/v2/models/churn/infer", body)
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 30
    while rv.store.shadows.count("churn") < 40 or rv.store.predictions.count("churn") < 40:
        assert time.monotonic() < deadline, "the rows were never stored"
        time.sleep(0.05)
    status = httpx.get(f"{url}/v1/deployments/churn/status").json()["shadow"]
    assert status["shadow_errors"] == 0, status
    assert status["rows_compared"] == 40
    theirs = other.predict_proba(rows[[*CHURN_FEATURES, "tickets"]])[:, 1]
    ours = churn_pipeline.predict_proba(rows[CHURN_FEATURES])[:, 1]
    assert status["probability_difference"]["max"] == pytest.approx(
        np.abs(theirs - ours).max(), abs=1e-9
    )
