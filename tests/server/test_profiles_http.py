"""Production profiles of requests served over real HTTP: every answered row lands in the
deployment's bucket rows, with the data-quality counts of what was sent."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest
from flaky import ARMED, Broken

from relevo.datasets import make_churn
from relevo.datasets.churn import CHURN_FEATURES
from relevo.monitoring import NumericProfile
from relevo.monitoring.windows import load_window, volumes
from relevo.server.background import BackgroundServer
from relevo.serving.records import frame_to_records
from relevo.settings import Settings


def _window(rv, deployment="churn"):
    now = datetime.now(UTC)
    return load_window(rv.store, deployment, now - timedelta(hours=1), now + timedelta(hours=1))


def _post(url, rows, deployment="churn"):
    return httpx.post(f"{url}/v1/deployments/{deployment}/predict", json={"instances": rows})


def test_answered_rows_end_up_in_the_bucket_profiles(rv, deployed, server_settings):
    frame = make_churn(300, seed=21)
    rows = frame_to_records(frame.drop(columns=["churned"]))
    rows[0]["contract"] = "lifetime"  # a category the reference never showed
    rows[1]["contract"] = "lifetime"
    rows[2]["contract"] = "weekly"
    rows[3]["coupon_code"] = "XMAS"  # columns the model does not use
    rows[4]["coupon_code"] = "NY"
    rows[4]["campaign"] = 7
    server = BackgroundServer(server_settings)
    server.start()
    try:
        server.wait_until_serving("churn", deployed.ref)
        answered = []
        for i in range(0, 200):
            answer = _post(server.url, [rows[i]])
            assert answer.status_code == 200, answer.text
            answered.append(answer.json()["predictions"][0]["probability"])
        answer = _post(server.url, rows[200:300])
        assert answer.status_code == 200
        answered += [p["probability"] for p in answer.json()["predictions"]]
        # refused by validation: one row without age, one with a text where a number goes
        bad = [dict(rows[5]), dict(rows[6]), rows[7]]
        del bad[0]["age"]
        bad[1]["tenure_months"] = "long"
        assert _post(server.url, bad).status_code == 422
    finally:
        server.stop()  # graceful: the profiles are stored before it returns

    window = _window(rv)
    assert window is not None
    assert window.rows == 300
    assert (window.model_name, window.model_version) == ("churn", deployed.version)
    sent = frame.iloc[:300]
    age = window.inputs.columns["age"]
    assert isinstance(age, NumericProfile)
    assert age.count == 300 and age.mean == pytest.approx(sent.age.mean(), rel=1e-12)
    prediction = window.prediction.columns["prediction"]
    assert isinstance(prediction, NumericProfile)
    assert prediction.mean == pytest.approx(np.mean(answered), rel=1e-12)
    quality = window.quality
    assert quality.unseen["contract"].total == 3
    assert quality.unseen["contract"].top == {"lifetime": 2, "weekly": 1}
    assert quality.unseen["contract"].distinct == 2
    assert window.inputs.columns["contract"].counts["__other__"] == 3
    assert quality.unused == {"campaign": 1, "coupon_code": 2}
    assert quality.rejected == 3
    assert quality.reasons == {"missing_column": 1, "wrong_type": 1}
    assert quality.failed == 0 and quality.nan_outputs == 0
    now = datetime.now(UTC)
    counted = volumes(rv.store, "churn", now - timedelta(hours=1), now + timedelta(hours=1))
    assert sum(n for _, _, n in counted) == 300
    assert len({replica for _, replica, _ in counted}) == 1


def test_rows_the_model_failed_on_are_counted(
    rv, churn_pipeline, churn_frame, server_settings, monkeypatch
):
    version = rv.registry.register("broken", Broken(churn_pipeline), churn_frame, target="churned")
    rv.deployments.deploy("broken", version.ref)
    monkeypatch.setitem(ARMED, "on", True)
    rows = frame_to_records(make_churn(5, seed=2).drop(columns=["churned"]))
    server = BackgroundServer(server_settings)
    server.start()
    try:
        server.wait_until_serving("broken", version.ref)
        assert _post(server.url, rows, "broken").status_code == 500
        assert _post(server.url, rows[:1], "broken").status_code == 500
    finally:
        server.stop()
    window = _window(rv, "broken")
    assert window is not None
    assert window.rows == 0
    assert window.quality.failed == 6


def test_two_servers_on_one_store_merge_exactly(rv, deployed, server_settings):
    frame = make_churn(200, seed=5)
    rows = frame_to_records(frame.drop(columns=["churned"]))
    servers = [BackgroundServer(server_settings) for _ in range(2)]
    for s in servers:
        s.start()
    try:
        for s in servers:
            s.wait_until_serving("churn", deployed.ref)
        for i, row in enumerate(rows):
            assert _post(servers[i % 2].url, [row]).status_code == 200
    finally:
        for s in servers:
            s.stop()
    window = _window(rv)
    assert window is not None and window.rows == 200
    tenure = window.inputs.columns["tenure_months"]
    assert isinstance(tenure, NumericProfile)
    assert tenure.mean == pytest.approx(frame.tenure_months.mean(), rel=1e-12)
    assert tenure.variance == pytest.approx(frame.tenure_months.var(), rel=1e-9)
    counted = volumes(rv.store, "churn", window.since, window.until)
    per_replica: dict[str, int] = {}
    for _, replica, n in counted:
        per_replica[replica] = per_replica.get(replica, 0) + n
    assert sorted(per_replica.values()) == [100, 100]


@pytest.mark.parametrize("profiles", [False])
def test_profiles_can_be_turned_off(rv, deployed, relevo_home, database_url, profiles):
    settings = Settings(home=relevo_home, database_url=database_url, profiles=profiles)
    rows = frame_to_records(make_churn(3, seed=1)[CHURN_FEATURES])
    server = BackgroundServer(settings)
    server.start()
    try:
        server.wait_until_serving("churn", deployed.ref)
        assert _post(server.url, rows).status_code == 200
    finally:
        server.stop()
    assert rv.store.profiles.count("churn") == 0
    assert rv.store.predictions.count("churn") == 3


def test_a_shadow_challengers_outputs_are_profiled_under_its_role(
    rv, deployed, churn_pipeline, churn_frame, server_settings
):
    from sklearn.base import clone

    other = clone(churn_pipeline).fit(churn_frame[CHURN_FEATURES], churn_frame["churned"])
    shadow = rv.registry.register("churn-shadow", other, churn_frame, target="churned")
    rv.deployments.deploy("churn", shadow.ref, strategy="shadow", mirror=1.0)
    frame = make_churn(30, seed=8)
    rows = frame_to_records(frame.drop(columns=["churned"]))
    server = BackgroundServer(server_settings)
    server.start()
    try:
        server.wait_until_serving("churn", deployed.ref)
        for i in range(0, 30, 3):
            assert _post(server.url, rows[i : i + 3]).status_code == 200
        deadline = time.monotonic() + 30
        while rv.store.shadows.count("churn") < 30:  # scored after the answers
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        server.stop()
    now = datetime.now(UTC)
    window = load_window(
        rv.store, "churn", now - timedelta(hours=1), now + timedelta(hours=1),
        model=("churn-shadow", shadow.version), role="shadow",
    )  # fmt: skip
    assert window is not None and window.rows == 30
    scores = other.predict_proba(frame[CHURN_FEATURES])[:, 1]
    prediction = window.prediction.columns["prediction"]
    assert isinstance(prediction, NumericProfile)
    assert prediction.mean == pytest.approx(scores.mean(), rel=1e-9)
    # the champion's own window is unchanged by the shadow
    champion = _window(rv)
    assert champion is not None and champion.model_name == "churn" and champion.rows == 30


def test_an_all_numeric_models_batches_are_profiled_from_their_number_blocks(
    rv, server_settings, monkeypatch, appended
):
    """Requests of several rows and micro-batches of one-row requests reach the writer
    process with their number columns as a block, row for row the features they log; the
    profile is the rows sent, exactly, even for a model that writes over its input (a number
    sent as text takes validation's other path, whose matrix the model could otherwise get)."""
    from concurrent.futures import ThreadPoolExecutor

    from flaky import Scribbler
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from relevo.datasets.churn import CHURN_NUMERIC
    from relevo.serving import spool
    from relevo.serving.entries import columns_of, decode

    train = make_churn(800, seed=31)
    inner = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression()).fit(
        train[CHURN_NUMERIC].to_numpy(dtype=float), train["churned"]
    )
    version = rv.registry.register(
        "numeric", Scribbler(inner), train[[*CHURN_NUMERIC, "churned"]], target="churned",
        features=list(CHURN_NUMERIC),
    )  # fmt: skip
    rv.deployments.deploy("numeric", version.ref)
    payloads = appended(spool.Spool)
    sent = make_churn(260, seed=32)[CHURN_NUMERIC]
    rows = frame_to_records(sent)
    k = int(np.flatnonzero(sent["age"].notna().to_numpy())[0])
    rows[k]["age"] = str(rows[k]["age"])  # a number as text: accepted, validated the long way
    monkeypatch.setitem(ARMED, "on", True)
    server = BackgroundServer(server_settings)
    server.start()
    try:
        server.wait_until_serving("numeric", version.ref)
        assert _post(server.url, rows[:100], "numeric").status_code == 200
        with httpx.Client() as client, ThreadPoolExecutor(16) as pool:
            url = f"{server.url}/v1/deployments/numeric/predict"
            codes = list(
                pool.map(lambda r: client.post(url, json={"instances": [r]}).status_code,
                         rows[100:])
            )  # fmt: skip
        assert codes == [200] * 160
    finally:
        server.stop()
    entries = [decode(p) for p in payloads]
    assert sum(e.n for e in entries) == 260
    blocked = [e for e in entries if e.numbers is not None]
    assert blocked and sum(e.n for e in blocked) == sum(e.n for e in entries if e.n > 1)
    assert any(e.n == 100 for e in blocked) and any(e.n < 100 for e in blocked)
    for e in blocked:
        columns = columns_of(e)
        logged = np.array([columns[name] for name in e.numeric], dtype=float).T
        np.testing.assert_array_equal(e.numbers, logged)
    window = _window(rv, "numeric")
    assert window is not None and window.rows == 260
    for name in CHURN_NUMERIC:
        column = window.inputs.columns[name]
        values = sent[name].to_numpy(dtype=float)
        assert isinstance(column, NumericProfile)
        assert (column.count, column.missing) == (np.isfinite(values).sum(), np.isnan(values).sum())
        assert column.mean == pytest.approx(np.nanmean(values), rel=1e-9)
