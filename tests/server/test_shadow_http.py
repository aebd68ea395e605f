"""Shadow over real HTTP: the champion answers every row; the challenger scores the mirrored
rows after the answer, its outputs stored under the same prediction ids and compared."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pytest
from flaky import ARMED, Broken
from sklearn.base import clone

from relevo.datasets import CHURN_FEATURES, CHURN_TARGET, make_churn
from relevo.routing.assign import mirror


@pytest.fixture
def armed():
    ARMED["on"] = False
    yield ARMED
    ARMED["on"] = False


def _rows(n: int, seed: int) -> list[dict]:
    frame = make_churn(n, seed=seed)[["customer_id", *CHURN_FEATURES]]
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def _predict(url: str, rows: list[dict]) -> list[dict]:
    answer = httpx.post(f"{url}/v1/deployments/churn/predict", json={"instances": rows}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"]


def _wait(count, expected: int, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while count() < expected:
        assert time.monotonic() < deadline, f"{count()} of {expected} rows stored"
        time.sleep(0.05)


def test_a_shadow_that_raises_on_every_call_costs_nothing_and_never_answers(
    rv, deployed, churn_pipeline, churn_frame, server_settings, spawn_server, armed
):
    broken = rv.registry.register(
        "churn-broken", Broken(churn_pipeline), churn_frame, target="churned"
    )
    rv.deployments.deploy("churn", broken.ref, strategy="shadow", actor="test")
    armed["on"] = True
    url = spawn_server(server_settings)

    rows = _rows(200, seed=11)
    answered = [p for i in range(0, 200, 4) for p in _predict(url, rows[i : i + 4])]
    assert {p["model"] for p in answered} == {deployed.ref}  # the shadow never answers

    _wait(lambda: rv.store.shadows.count("churn"), 200)
    _wait(lambda: rv.store.predictions.count("churn"), 200)
    status = httpx.get(f"{url}/v1/deployments/churn/status").json()
    shadow = status["shadow"]
    assert shadow["rows"] == 200 and shadow["shadow_errors"] == 200
    assert shadow["shadow_error_rate"] == 1.0 and shadow["rows_compared"] == 0
    # latencies are compared over the rows compared: none here
    assert shadow["shadow_latency_ms"] is None and shadow["champion_latency_ms"] is None
    assert rv.deployments.get("churn").challenger_ref == broken.ref  # a shadow is never acted on


def test_shadow_comparison_matches_an_independent_computation(
    rv, deployed, churn_pipeline, churn_frame, server_settings, spawn_server, cli
):
    other = clone(churn_pipeline).set_params(model__C=0.001)
    other.fit(churn_frame[CHURN_FEATURES], churn_frame[CHURN_TARGET])
    small = rv.registry.register("churn-small", other, churn_frame, target="churned")
    state = rv.deployments.deploy("churn", small.ref, strategy="shadow", mirror=0.5, actor="t")
    url = spawn_server(server_settings)

    rows = _rows(600, seed=12)
    answered = [p for i in range(0, 600, 50) for p in _predict(url, rows[i : i + 50])]
    keys = [r["customer_id"] for r in rows]
    chosen = np.flatnonzero(mirror(state, keys, len(keys)))
    assert 0.4 < chosen.size / len(rows) < 0.6
    _wait(lambda: rv.store.shadows.count("churn"), int(chosen.size))
    _wait(lambda: rv.store.predictions.count("churn"), len(rows))

    frame = make_churn(600, seed=12).iloc[chosen][CHURN_FEATURES]  # the rows sent
    theirs = other.predict_proba(frame)[:, 1]
    ours = np.array([answered[i]["probability"] for i in chosen])
    expected_diff = np.abs(theirs - ours)
    expected_labels = np.mean(
        (theirs >= 0.5) == np.array([answered[i]["probability"] >= 0.5 for i in chosen])
    )

    result = cli("status", "churn", "--json")
    assert result.exit_code == 0, result.output
    shadow = json.loads(result.stdout)["shadow"]
    assert shadow["rows"] == shadow["rows_compared"] == chosen.size
    assert shadow["label_agreement"] == pytest.approx(expected_labels)
    assert shadow["probability_difference"]["max"] == pytest.approx(expected_diff.max(), abs=1e-9)
    assert shadow["probability_difference"]["mean"] == pytest.approx(expected_diff.mean(), abs=1e-9)
    assert shadow["shadow_errors"] == 0
    table = cli("status", "churn").stdout
    assert "Shadow churn-small:1 against the champion" in table and "label agreement" in table
