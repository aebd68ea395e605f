"""Batch scoring under a canary: rows split by `assign` as over HTTP, each answered and logged by
its model with its role, a failing challenger's rows answered by the champion; a basic or
shadow deployment's file answered by the champion alone, as before."""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from relevo.datasets import (
    CHURN_CATEGORICAL,
    CHURN_FEATURES,
    CHURN_NUMERIC,
    CHURN_TARGET,
    make_churn,
)
from relevo.routing.assign import assign
from relevo.serving.batch import score_file, score_frame
from relevo.serving.batch_route import ChallengerFallbackWarning, RoutingKeyMissingWarning

#: the churn features without `tenure_months`: a challenger with a signature of its own
FEWER = [c for c in CHURN_FEATURES if c != "tenure_months"]


class Failing:
    """Delegates to a fitted model until `FAILING["on"]` is set (registration rehearses the
    model), then raises on every call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.classes_ = inner.classes_
        self.feature_names_in_ = getattr(inner, "feature_names_in_", None)

    def fit(self, x: Any, y: Any) -> Failing:
        self.inner.fit(x, y)
        return self

    def _check(self) -> None:
        if FAILING["on"]:
            raise RuntimeError("challenger failing on purpose")

    def predict(self, x: Any) -> Any:
        self._check()
        return self.inner.predict(x)

    def predict_proba(self, x: Any) -> Any:
        self._check()
        return self.inner.predict_proba(x)


FAILING = {"on": False}


@pytest.fixture
def failing():
    FAILING["on"] = False
    yield FAILING
    FAILING["on"] = False


@pytest.fixture
def champion(rv, churn_pipeline, churn_frame):
    version = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", version.ref, key="customer_id")
    return version


def _canary(rv, churn_pipeline, churn_frame, weight: float):
    """Deployment `churn` with `_other` as its canary challenger at `weight`: the state, the
    challenger's version and its model."""
    small = _other(churn_pipeline, churn_frame)
    challenger = rv.registry.register("churn-small", small, churn_frame, target="churned")
    state = rv.deployments.deploy("churn", challenger.ref, weight=weight, actor="test")
    return state, challenger, small


def _other(churn_pipeline, churn_frame, features=CHURN_FEATURES):
    """Another model for the churn features (or fewer of them)."""
    model = clone(churn_pipeline).set_params(model__C=0.01)
    if features is not CHURN_FEATURES:
        numeric = [c for c in CHURN_NUMERIC if c in features]
        model.set_params(
            preprocess__transformers=[
                ("numeric", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
                ("categorical", OneHotEncoder(handle_unknown="ignore"), CHURN_CATEGORICAL),
            ]
        )
    return model.fit(churn_frame[features], churn_frame[CHURN_TARGET])


def _stored(rv) -> list[dict]:
    return [r for chunk in rv.store.predictions.iter_rows("churn") for r in chunk]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_keyed_canary_splits_a_file_as_assign_does_and_logs_each_role(
    rv, champion, churn_pipeline, churn_frame, tmp_path, suffix, cli
):
    state, challenger, small = _canary(rv, churn_pipeline, churn_frame, 0.3)
    frame = make_churn(600, seed=11, id_start=900)
    source = tmp_path / f"in{suffix}"
    frame.to_csv(source, index=False) if suffix == ".csv" else frame.to_parquet(source)
    output = tmp_path / f"out{suffix}"

    done = score_file(rv, "churn", source, output, chunk_rows=128)  # 5 chunks, the last short
    scored = pd.read_csv(output) if suffix == ".csv" else pd.read_parquet(output)

    keys = frame["customer_id"].tolist()
    to_challenger = assign(state, keys, len(keys)).astype(bool)
    assert 0.2 < to_challenger.mean() < 0.4
    assert scored["customer_id"].tolist() == keys  # the file's order
    expected = np.where(to_challenger, challenger.ref, champion.ref)
    assert scored["model"].tolist() == expected.tolist()
    # each row's answer is its own model's
    probability = np.where(
        to_challenger,
        small.predict_proba(frame[CHURN_FEATURES])[:, 1],
        churn_pipeline.predict_proba(frame[CHURN_FEATURES])[:, 1],
    )
    np.testing.assert_allclose(scored["probability"], probability, rtol=1e-12)
    assert list(scored.columns) == [*frame.columns, "id", "model", "probability", "label"]

    n_challenger = int(to_challenger.sum())
    assert done.rows == 600 and done.fallback == 0
    assert done.models == {champion.ref: 600 - n_challenger, challenger.ref: n_challenger}
    assert done.model == (
        f"{champion.ref} ({600 - n_challenger:,} rows) and {challenger.ref} ({n_challenger} rows)"
    )

    stored = _stored(rv)
    by_id = {r["id"]: r for r in stored}
    assert sorted(by_id) == sorted(scored["id"])
    roles = [
        (by_id[i]["role"], by_id[i]["model_name"], by_id[i]["routing_key"]) for i in scored["id"]
    ]
    assert roles == [
        ("challenger", "churn-small", k) if c else ("champion", "churn", k)
        for k, c in zip(keys, to_challenger, strict=True)
    ]

    # the CLI's summary names both models with their rows
    again = cli("predict", "churn", "--input", source, "--output", tmp_path / f"cli{suffix}")
    assert again.exit_code == 0, again.stderr
    assert (
        f"Scored 600 rows with {champion.ref} ({600 - n_challenger} rows) and "
        f"{challenger.ref} ({n_challenger} rows)"
    ) in again.stdout


def test_zero_padded_keys_in_a_csv_route_and_log_as_the_api_sends_them(
    rv, champion, churn_pipeline, churn_frame, tmp_path
):
    state, challenger, _ = _canary(rv, churn_pipeline, churn_frame, 0.5)
    frame = make_churn(300, seed=6)
    frame["customer_id"] = [f"{i:06d}" for i in range(300)]  # "000017", not 17
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)

    score_file(rv, "churn", source, tmp_path / "out.csv", chunk_rows=100)
    scored = pd.read_csv(tmp_path / "out.csv", dtype={"customer_id": str})

    keys = frame["customer_id"].tolist()  # what a JSON client sends
    api = np.where(assign(state, keys, len(keys)) == 1, challenger.ref, champion.ref)
    assert scored["customer_id"].tolist() == keys
    assert scored["model"].tolist() == api.tolist()
    by_id = {r["id"]: r for r in _stored(rv)}
    assert [by_id[i]["routing_key"] for i in scored["id"]] == keys


def test_a_gap_in_a_nullable_integer_key_is_a_missing_key(
    rv, champion, churn_pipeline, churn_frame, tmp_path
):
    _, challenger, _ = _canary(rv, churn_pipeline, churn_frame, 0.5)
    frame = make_churn(400, seed=5)
    frame["customer_id"] = pd.array([i if i % 2 else None for i in range(400)], dtype="Int64")
    source = tmp_path / "in.parquet"
    frame.to_parquet(source)

    with pytest.warns(RoutingKeyMissingWarning, match="200 of 400 rows had no routing key"):
        score_file(rv, "churn", source, tmp_path / "out.parquet", chunk_rows=100)

    scored = pd.read_parquet(tmp_path / "out.parquet")
    keyless = scored[scored["customer_id"].isna()]
    by_id = {r["id"]: r for r in _stored(rv)}
    assert {by_id[i]["routing_key"] for i in keyless["id"]} == {None}  # not "<NA>"
    assert set(keyless["model"]) == {champion.ref, challenger.ref}  # split at random


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_challenger_whose_labels_are_words_writes_every_label_as_text(
    rv, champion, churn_pipeline, churn_frame, tmp_path, suffix
):
    other = churn_frame.assign(churned=np.where(churn_frame["churned"] == 1, "yes", "no"))
    words = clone(churn_pipeline).fit(other[CHURN_FEATURES], other[CHURN_TARGET])
    challenger = rv.registry.register("churn-words", words, other, target="churned")
    state = rv.deployments.deploy("churn", challenger.ref, weight=0.2, actor="test")
    frame = make_churn(300, seed=7)
    source = tmp_path / "in.parquet"
    frame.to_parquet(source)
    output = tmp_path / f"out{suffix}"

    score_file(rv, "churn", source, output, chunk_rows=100)
    scored = pd.read_csv(output) if suffix == ".csv" else pd.read_parquet(output)

    theirs = assign(state, frame["customer_id"].tolist(), len(frame)).astype(bool)
    expected = np.where(
        theirs,
        words.predict(frame[CHURN_FEATURES]).astype(str),
        churn_pipeline.predict(frame[CHURN_FEATURES]).astype(str),
    )
    assert scored["label"].astype(str).tolist() == expected.tolist()
    assert {"yes", "no"} & set(scored["label"]) and {"0", "1"} & set(scored["label"].astype(str))


def test_rows_without_a_key_go_to_the_challenger_at_the_canary_weight(
    rv, champion, churn_pipeline, churn_frame
):
    _, challenger, small = _canary(rv, churn_pipeline, churn_frame, 0.3)
    frame = make_churn(2000, seed=12)[CHURN_FEATURES]  # no customer_id: no routing key

    with pytest.warns(RoutingKeyMissingWarning, match="2,000 of 2,000 rows had no routing key"):
        scored = score_frame(rv, "churn", frame, chunk_rows=500)

    assert scored.index.equals(frame.index)
    share = (scored["model"] == challenger.ref).mean()
    assert 0.25 < share < 0.35  # 0.3 +- 4.9 standard deviations
    mine = scored["model"] == challenger.ref
    np.testing.assert_allclose(
        scored.loc[mine, "probability"], small.predict_proba(frame[mine])[:, 1], rtol=1e-12
    )
    assert Counter(r["role"] for r in _stored(rv)) == {
        "challenger": int(mine.sum()),
        "champion": int((~mine).sum()),
    }


def test_a_challenger_with_its_own_signature_gets_its_own_columns(
    rv, champion, churn_pipeline, churn_frame, tmp_path
):
    fewer = _other(churn_pipeline, churn_frame, FEWER)
    challenger = rv.registry.register(
        "churn-fewer", fewer, churn_frame[[*FEWER, "churned"]], target="churned"
    )
    state = rv.deployments.deploy("churn", challenger.ref, weight=0.5, actor="test")
    frame = make_churn(300, seed=13)
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)

    score_file(rv, "churn", source, tmp_path / "out.csv", chunk_rows=100)
    scored = pd.read_csv(tmp_path / "out.csv")

    theirs = assign(state, frame["customer_id"].tolist(), len(frame)).astype(bool)
    np.testing.assert_allclose(
        scored.loc[theirs, "probability"],
        fewer.predict_proba(frame.loc[theirs, FEWER])[:, 1],
        rtol=1e-12,
    )
    logged = [r for r in _stored(rv) if r["role"] == "challenger"]
    assert len(logged) == int(theirs.sum())
    assert all("tenure_months" not in r["features"] for r in logged)


def test_a_failing_challenger_s_rows_are_answered_by_the_champion_as_fallback(
    rv, champion, churn_pipeline, churn_frame, tmp_path, failing, cli
):
    flaky = rv.registry.register(
        "churn-failing", Failing(churn_pipeline), churn_frame, target="churned"
    )
    state = rv.deployments.deploy("churn", flaky.ref, weight=0.3, actor="test")
    failing["on"] = True
    frame = make_churn(400, seed=14)
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)

    with pytest.warns(ChallengerFallbackWarning, match=r"failed on \d+ of 400 rows") as caught:
        done = score_file(rv, "churn", source, tmp_path / "out.csv", chunk_rows=100)
    assert "challenger failing on purpose" in str(caught[0].message)
    scored = pd.read_csv(tmp_path / "out.csv")

    theirs = assign(state, frame["customer_id"].tolist(), len(frame)).astype(bool)
    assert set(scored["model"]) == {champion.ref}  # the champion answered every row
    np.testing.assert_allclose(
        scored["probability"],
        churn_pipeline.predict_proba(frame[CHURN_FEATURES])[:, 1],
        rtol=1e-12,
    )
    assert done.models == {champion.ref: 400} and done.fallback == int(theirs.sum())
    by_id = {r["id"]: r for r in _stored(rv)}
    roles = [by_id[i]["role"] for i in scored["id"]]
    assert roles == ["fallback" if t else "champion" for t in theirs]
    assert {by_id[i]["model_name"] for i in scored["id"]} == {"churn"}
    # each fallback row names the challenger that failed on it (the gates charge it alone)
    named = [by_id[i]["challenger"] for i in scored["id"]]
    assert named == [flaky.ref if t else None for t in theirs]

    shown = cli("predict", "churn", "--input", source, "--output", tmp_path / "cli.csv")
    assert shown.exit_code == 0
    assert "Warning:" in shown.stderr and "failed on" in shown.stderr


@pytest.mark.parametrize("strategy", ["basic", "shadow"])
def test_basic_and_shadow_deployments_answer_every_row_with_the_champion(
    rv, champion, churn_pipeline, churn_frame, tmp_path, strategy
):
    if strategy == "shadow":
        small = _other(churn_pipeline, churn_frame)
        shadow = rv.registry.register("churn-small", small, churn_frame, target="churned")
        rv.deployments.deploy("churn", shadow.ref, strategy="shadow", actor="test")
    frame = make_churn(200, seed=15)
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)

    done = score_file(rv, "churn", source, tmp_path / "out.csv", chunk_rows=64)
    scored = pd.read_csv(tmp_path / "out.csv")

    assert done.model == champion.ref and done.models == {champion.ref: 200}
    assert list(scored.columns) == [*frame.columns, "id", "model", "probability", "label"]
    assert set(scored["model"]) == {champion.ref}
    assert {r["role"] for r in _stored(rv)} == {"champion"}
    assert rv.store.shadows.count("churn") == 0  # batch files are not mirrored


def test_rows_the_challenger_s_own_signature_refuses_fall_back_to_the_champion(
    rv, churn_pipeline, churn_frame, tmp_path
):
    fewer = _other(churn_pipeline, churn_frame, FEWER)
    base = rv.registry.register("churn", fewer, churn_frame[[*FEWER, "churned"]], target="churned")
    rv.deployments.deploy("churn", base.ref, key="customer_id")
    wide = rv.registry.register("churn-wide", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", wide.ref, weight=0.5, actor="test")
    frame = make_churn(200, seed=16).drop(columns="tenure_months")  # what the champion needs
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)

    with pytest.warns(ChallengerFallbackWarning, match="tenure_months"):
        done = score_file(rv, "churn", source, tmp_path / "out.csv", chunk_rows=50)

    scored = pd.read_csv(tmp_path / "out.csv")
    assert set(scored["model"]) == {base.ref} and done.fallback > 0
    roles = Counter(r["role"] for r in _stored(rv))
    assert roles == {"champion": 200 - done.fallback, "fallback": done.fallback}


def test_rows_without_their_key_are_counted_in_a_warning_and_keyed_rows_are_not(
    rv, champion, churn_pipeline, churn_frame, tmp_path
):
    _canary(rv, churn_pipeline, churn_frame, 0.3)
    frame = make_churn(400, seed=21)
    keyed = tmp_path / "keyed.csv"
    frame.to_csv(keyed, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RoutingKeyMissingWarning)
        score_file(rv, "churn", keyed, tmp_path / "out1.csv", chunk_rows=100)

    gaps = frame.astype({"customer_id": object})
    gaps.loc[gaps.index[::10], "customer_id"] = None  # 40 rows, across every chunk
    holed = tmp_path / "holed.csv"
    gaps.to_csv(holed, index=False)
    with pytest.warns(RoutingKeyMissingWarning, match=r"40 of 400 rows .*'customer_id'"):
        score_file(rv, "churn", holed, tmp_path / "out2.csv", chunk_rows=100)


def test_a_nan_row_among_labels_written_as_text_has_an_empty_label(
    rv, champion, churn_pipeline, churn_frame, tmp_path, nan_for_the_old
):
    """With labels of two types written as text, a row without a label (its model answered
    NaN) was written as the text "None"."""
    other = churn_frame.assign(churned=np.where(churn_frame["churned"] == 1, "yes", "no"))
    words = clone(churn_pipeline).fit(other[CHURN_FEATURES], other[CHURN_TARGET])
    challenger = rv.registry.register("churn-words", words, other, target="churned")
    rv.deployments.deploy("churn", challenger.ref, weight=0.2, actor="test")
    nan_for_the_old(70)
    frame = make_churn(300, seed=7)
    source = tmp_path / "in.parquet"
    frame.to_parquet(source)
    output = tmp_path / "out.parquet"

    score_file(rv, "churn", source, output, chunk_rows=100)
    scored = pd.read_parquet(output)

    old = scored["age"] >= 70
    assert old.any() and (~old).any()
    assert scored.loc[old, "label"].isna().all()
    assert scored.loc[old, "probability"].isna().all()
    assert "None" not in set(scored["label"].dropna())
    assert scored.loc[~old, "label"].notna().all()
