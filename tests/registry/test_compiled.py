"""The optional compiled form of a scikit-learn model (`--compile onnx`, issue 13 item 1): kept
only when it answers like the model on every reference row, served in its place, and given up
with a warning (never a wrong answer) when it cannot be built where the model is loaded."""

from __future__ import annotations

import json
import warnings

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import relevo.registry.compiled as compiled_module
import relevo.registry.registry as registry_module
from relevo.datasets import CHURN_NUMERIC, CHURN_TARGET
from relevo.errors import InvalidInputError, MissingExtraError
from relevo.registry.compiled import CompiledFormWarning
from relevo.server.background import BackgroundServer
from relevo.settings import Settings

pytest.importorskip("skl2onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def numeric(churn_frame: pd.DataFrame) -> pd.DataFrame:
    """The churn frame's numeric inputs (no missing values) and target."""
    return churn_frame[[*CHURN_NUMERIC, CHURN_TARGET]].dropna().reset_index(drop=True)


@pytest.fixture(scope="module")
def classifier(numeric: pd.DataFrame):
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return model.fit(numeric[CHURN_NUMERIC], numeric[CHURN_TARGET])


def test_a_compiled_classifier_answers_like_the_pipeline(rv, numeric, classifier):
    version = rv.registry.register(
        "churn-num", classifier, numeric, target=CHURN_TARGET, compile="onnx"
    )
    options = version.flavor_options
    assert options["compiled"] == "onnx"
    assert 0.0 <= options["compiled_max_difference"] <= compiled_module.TOLERANCE
    assert set(options["compiled_with"]) == {"skl2onnx", "onnxruntime"}

    loaded = rv.registry.load(version.ref).model
    assert loaded.compiled is not None
    rows = numeric[CHURN_NUMERIC].iloc[:300]
    got = loaded.predict_array(rows.to_numpy(dtype=np.float64))
    expected = classifier.predict_proba(rows)
    assert got.probabilities is not None
    np.testing.assert_allclose(got.probabilities, expected, rtol=0, atol=1e-9)
    # the DataFrame door of the same loaded model goes through the compiled form too
    np.testing.assert_allclose(loaded.predict(rows).probabilities, expected, rtol=0, atol=1e-9)


def test_a_compiled_regressor_answers_like_the_pipeline(rv, numeric):
    x, y = numeric[CHURN_NUMERIC], numeric[CHURN_NUMERIC[1]] * 3.0
    model = make_pipeline(StandardScaler(), Ridge()).fit(x, y)
    reference = x.assign(spend=y)
    version = rv.registry.register("spend", model, reference, target="spend", compile="onnx")
    loaded = rv.registry.load(version.ref).model
    got = loaded.predict_array(x.to_numpy(dtype=np.float64)).values
    np.testing.assert_allclose(got, model.predict(x), rtol=1e-9)


def test_text_inputs_cannot_be_compiled_and_nothing_is_registered(cli, churn_files):
    result = cli(
        "models", "register", "churn", churn_files.model, "--reference", churn_files.reference,
        "--target", "churned", "--compile", "onnx",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "--compile onnx needs a model fed a float64 array" in result.output
    assert "Traceback" not in result.output
    assert "No model is registered" in cli("models", "list").output


def test_an_unknown_compiled_form_is_refused(rv, numeric, classifier):
    with pytest.raises(InvalidInputError, match=r"unknown compiled form 'tvm'.*onnx"):
        rv.registry.register("m", classifier, numeric, target=CHURN_TARGET, compile="tvm")


class _Thresholds(ClassifierMixin, BaseEstimator):
    """A classifier skl2onnx has no converter for."""

    def fit(self, x, y):
        self.classes_ = np.unique(y)
        self.n_features_in_ = np.asarray(x).shape[1]
        return self

    def predict_proba(self, x):
        p = 1.0 / (1.0 + np.exp(-np.nan_to_num(np.asarray(x, dtype=float)[:, :1])))
        return np.hstack([1.0 - p, p])

    def predict(self, x):
        return self.classes_[(self.predict_proba(x)[:, 1] >= 0.5).astype(int)]


def test_an_estimator_skl2onnx_cannot_convert_is_refused_with_its_reason(rv, numeric):
    model = _Thresholds().fit(numeric[CHURN_NUMERIC].to_numpy(), numeric[CHURN_TARGET])
    with pytest.raises(InvalidInputError, match="skl2onnx cannot convert this _Thresholds"):
        rv.registry.register(
            "odd", model, numeric, target=CHURN_TARGET, compile="onnx", features=CHURN_NUMERIC
        )
    assert rv.registry.list() == []


def test_a_graph_onnxruntime_cannot_run_in_float64_is_refused(rv, numeric):
    # onnxruntime's Imputer takes float32 only: the float64 graph does not load
    model = make_pipeline(SimpleImputer(), LogisticRegression(max_iter=1000))
    model.fit(numeric[CHURN_NUMERIC], numeric[CHURN_TARGET])
    with pytest.raises(InvalidInputError, match=r"onnxruntime cannot run .* float64: .*Imputer"):
        rv.registry.register("m", model, numeric, target=CHURN_TARGET, compile="onnx")
    assert rv.registry.list() == []


def test_a_compiled_form_outside_the_tolerance_is_refused(rv, numeric, classifier, monkeypatch):
    monkeypatch.setattr(registry_module, "COMPILE_TOLERANCE", -1.0)
    with pytest.raises(InvalidInputError, match=r"answers up to .* away from the model"):
        rv.registry.register("m", classifier, numeric, target=CHURN_TARGET, compile="onnx")
    assert rv.registry.list() == []


def test_registration_names_the_extra_when_skl2onnx_is_missing(
    rv, numeric, classifier, monkeypatch
):
    def missing(module: str):
        raise MissingExtraError(module, "onnx", "Compiling a model to ONNX")

    monkeypatch.setattr(compiled_module, "_require", missing)
    with pytest.raises(MissingExtraError, match=r"pip install 'relevo\[onnx\]'"):
        rv.registry.register("m", classifier, numeric, target=CHURN_TARGET, compile="onnx")


def test_a_version_whose_compiled_form_cannot_be_built_is_served_by_sklearn(
    rv, numeric, classifier, monkeypatch
):
    version = rv.registry.register("m", classifier, numeric, target=CHURN_TARGET, compile="onnx")

    def missing(module: str):
        raise MissingExtraError(module, "onnx", "Compiling a model to ONNX")

    monkeypatch.setattr(compiled_module, "_require", missing)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = rv.registry.load(version.ref).model
    assert loaded.compiled is None
    said = [str(w.message) for w in caught if issubclass(w.category, CompiledFormWarning)]
    assert said and "m:1 is served by sklearn, not its compiled form (onnx)" in said[0]
    rows = numeric[CHURN_NUMERIC].iloc[:50]
    np.testing.assert_allclose(
        loaded.predict_array(rows.to_numpy(dtype=np.float64)).probabilities,
        classifier.predict_proba(rows),
        rtol=1e-12,
    )


def test_a_compiled_form_checked_with_other_libraries_is_not_served(
    rv, numeric, classifier, monkeypatch
):
    """The compiled form was compared with the model at registration, with the skl2onnx and
    onnxruntime of that day; where other versions are installed (an image built later, an
    upgrade), it was rebuilt and served unchecked."""
    version = rv.registry.register("m", classifier, numeric, target=CHURN_TARGET, compile="onnx")
    now = compiled_module.versions()
    monkeypatch.setattr(registry_module, "versions", lambda: {**now, "onnxruntime": "0.0.1-other"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = rv.registry.load(version.ref).model
    assert loaded.compiled is None
    said = [str(w.message) for w in caught if issubclass(w.category, CompiledFormWarning)]
    assert said and "m:1 is served by sklearn, not its compiled form (onnx)" in said[0]
    assert f"onnxruntime {now['onnxruntime']} -> 0.0.1-other" in said[0]
    assert "register the model again with --compile" in said[0]
    rows = numeric[CHURN_NUMERIC].iloc[:50]
    np.testing.assert_allclose(
        loaded.predict_array(rows.to_numpy(dtype=np.float64)).probabilities,
        classifier.predict_proba(rows),
        rtol=1e-12,
    )
    monkeypatch.setattr(registry_module, "versions", lambda: now)  # the same libraries again
    assert rv.registry.load(version.ref).model.compiled is not None


def test_the_server_answers_with_the_compiled_form(
    rv, numeric, classifier, relevo_home, database_url, cli
):
    version = rv.registry.register(
        "churn-num", classifier, numeric, target=CHURN_TARGET, compile="onnx"
    )
    rv.deployments.deploy("churn-num", version.ref)
    shown = cli("models", "show", version.ref)
    assert shown.exit_code == 0 and "ONNX form (compiled" in shown.output

    frame = numeric[CHURN_NUMERIC].iloc[:40]
    rows = [
        {c: (None if pd.isna(v) else float(v)) for c, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]
    server = BackgroundServer(
        Settings(home=relevo_home, database_url=database_url, log_flush_interval_s=0.05)
    )
    server.start()
    try:
        answer = httpx.post(
            f"{server.url}/v1/deployments/churn-num/predict", json={"instances": rows}, timeout=30
        )
    finally:
        server.stop()
    assert answer.status_code == 200, answer.text
    got = [p["probability"] for p in answer.json()["predictions"]]
    np.testing.assert_allclose(got, classifier.predict_proba(frame)[:, 1], rtol=0, atol=1e-9)


def test_a_compiled_versions_image_installs_the_onnx_extra(rv, numeric, classifier, cli, tmp_path):
    version = rv.registry.register("m", classifier, numeric, target=CHURN_TARGET, compile="onnx")
    result = cli("containerize", version.ref, "--output", tmp_path / "ctx", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["extras"] == ["postgres", "onnx"]
    refused = cli("containerize", version.ref, "-o", tmp_path / "ctx2", "--extras", "postgres")
    assert refused.exit_code == 2
    assert "the model needs the 'onnx' extra: add it to --extras" in refused.output


def test_a_compiled_multiclass_model_with_text_labels_answers_like_the_pipeline(rv, numeric):
    x = numeric[CHURN_NUMERIC]
    labels = pd.qcut(x[CHURN_NUMERIC[1]], 3, labels=["low", "mid", "high"]).astype(str)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, labels)
    version = rv.registry.register(
        "tier", model, x.assign(tier=labels), target="tier", compile="onnx"
    )
    assert version.task == "multiclass"
    loaded = rv.registry.load(version.ref).model
    got = loaded.predict_array(x.to_numpy(dtype=np.float64)).probabilities
    np.testing.assert_allclose(got, model.predict_proba(x), rtol=0, atol=1e-9)
