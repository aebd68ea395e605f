"""Shadow over real HTTP: the champion answers every row; the challenger scores the mirrored
rows after the answer, its outputs stored under the same prediction ids and compared, whatever
the two models are (a challenger of another task, a multiclass pair)."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pytest
from flaky import ARMED, Broken
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from relevo.datasets import (
    CHURN_CATEGORICAL,
    CHURN_FEATURES,
    CHURN_NUMERIC,
    CHURN_TARGET,
    make_churn,
)
from relevo.routing.assign import mirror


@pytest.fixture
def armed():
    ARMED["on"] = False
    yield ARMED
    ARMED["on"] = False


def _rows(n: int, seed: int) -> list[dict]:
    frame = make_churn(n, seed=seed)[["customer_id", *CHURN_FEATURES]]
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def _predict(
    url: str, rows: list[dict], headers: dict | None = None, name: str = "churn"
) -> list[dict]:
    answer = httpx.post(
        f"{url}/v1/deployments/{name}/predict",
        json={"instances": rows},
        headers=headers or {},
        timeout=60,
    )
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


def _preprocess() -> ColumnTransformer:
    return ColumnTransformer(
        [
            ("numeric", make_pipeline(SimpleImputer(), StandardScaler()), CHURN_NUMERIC),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), CHURN_CATEGORICAL),
        ]
    )


def test_rows_an_admin_sends_to_the_shadow_itself_are_not_compared(
    rv, deployed, churn_pipeline, churn_frame, server_settings, spawn_server
):
    """An admin trying the shadow by hand (X-Relevo-Model: challenger, as the docs suggest):
    the challenger answers those rows, and they are not mirrored to it again (the comparison
    would pair the challenger's output with itself: agreement 1.0, difference 0)."""
    other = clone(churn_pipeline).set_params(model__C=0.001)
    other.fit(churn_frame[CHURN_FEATURES], churn_frame[CHURN_TARGET])
    small = rv.registry.register("churn-small", other, churn_frame, target="churned")
    rv.deployments.deploy("churn", small.ref, strategy="shadow", actor="t")
    url = spawn_server(server_settings)
    rows = _rows(200, seed=12)
    answered = _predict(url, rows, headers={"X-Relevo-Model": "challenger"})
    assert {p["model"] for p in answered} == {small.ref}
    _wait(lambda: rv.store.predictions.count("churn"), 200)
    time.sleep(1.0)
    status = httpx.get(f"{url}/v1/deployments/churn/status").json()
    shadow = status["shadow"]
    # what the comparison claims: "challenger vs champion" on these rows
    frame = make_churn(200, seed=12)[CHURN_FEATURES]
    champion_p = churn_pipeline.predict_proba(frame)[:, 1]
    small_p = other.predict_proba(frame)[:, 1]
    true_diff = np.abs(champion_p - small_p).mean()
    assert true_diff > 0.01
    # no champion answered these rows: they must not be reported as "shadow vs champion"
    assert shadow["rows_compared"] == 0, shadow
    assert rv.store.shadows.count("churn") == 0


def test_a_regression_shadow_of_a_binary_champion_is_reported_by_status(
    rv, deployed, churn_frame, server_settings, spawn_server, cli
):
    """Any registered model may shadow: a regressor beside a classifier shares no measure of
    output with it, and `relevo status` says so instead of failing (it raised KeyError)."""
    reg = Pipeline([("preprocess", _preprocess()), ("model", LinearRegression())])
    reg.fit(churn_frame[CHURN_FEATURES], churn_frame[CHURN_TARGET].astype(float))
    version = rv.registry.register("churn-reg", reg, churn_frame, target="churned")
    assert version.task == "regression", version.task
    rv.deployments.deploy("churn", version.ref, strategy="shadow", actor="t")
    url = spawn_server(server_settings)
    _predict(url, _rows(50, seed=3))
    _wait(lambda: rv.store.shadows.count("churn"), 50)
    _wait(lambda: rv.store.predictions.count("churn"), 50)
    result = cli("status", "churn", "--json")
    assert result.exit_code == 0, result.output
    shadow = json.loads(result.stdout)["shadow"]
    assert shadow["rows_compared"] == 50
    assert shadow["label_agreement"] is None and shadow["probability_difference"] is None
    assert shadow["value_difference"] is None
    response = httpx.get(f"{url}/v1/deployments/churn/status")
    assert response.status_code == 200, response.text
    assert response.json()["shadow"]["rows_compared"] == 50
    table = cli("status", "churn")
    assert table.exit_code == 0 and "rows compared" in table.stdout


def test_a_multiclass_shadow_reports_the_largest_probability_difference_over_classes(
    rv, churn_frame, server_settings, spawn_server, cli
):
    frame = churn_frame.copy()
    frame["plan_tier"] = (frame["tenure_months"] // 24).clip(0, 2).astype(int)
    features = [c for c in CHURN_FEATURES if c != "tenure_months"]
    numeric = [c for c in CHURN_NUMERIC if c != "tenure_months"]

    def make(c: float) -> Pipeline:
        pre = ColumnTransformer(
            [
                ("numeric", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
                ("categorical", OneHotEncoder(handle_unknown="ignore"), CHURN_CATEGORICAL),
            ]
        )
        return Pipeline(
            [("preprocess", pre), ("model", LogisticRegression(C=c, max_iter=1000))]
        ).fit(frame[features], frame["plan_tier"])

    ref = frame[[*features, "plan_tier"]]
    first, second = make(1.0), make(0.001)
    a = rv.registry.register("tier", first, ref, target="plan_tier")
    b = rv.registry.register("tier", second, ref, target="plan_tier")
    assert a.task == "multiclass"
    rv.deployments.deploy("tier", a.ref)
    rv.deployments.deploy("tier", b.ref, strategy="shadow")
    url = spawn_server(server_settings)
    sent = make_churn(100, seed=5)[features]
    rows = sent.astype(object).where(sent.notna(), None).to_dict(orient="records")
    _predict(url, rows, name="tier")
    _wait(lambda: rv.store.shadows.count("tier"), 100)
    _wait(lambda: rv.store.predictions.count("tier"), 100)
    shadow = json.loads(cli("status", "tier", "--json").stdout)["shadow"]
    assert shadow["rows_compared"] == 100
    gap = np.abs(first.predict_proba(sent) - second.predict_proba(sent)).max(axis=1)
    found = shadow["probability_difference"]
    assert found is not None, shadow
    assert found["mean"] == pytest.approx(gap.mean(), abs=1e-9)
    assert found["max"] == pytest.approx(gap.max(), abs=1e-9)
    assert found["p95"] == pytest.approx(np.percentile(gap, 95), abs=1e-9)
    agree = (first.predict(sent) == second.predict(sent)).mean()
    assert shadow["label_agreement"] == pytest.approx(agree)
