"""Registering models whatever they were fitted on: which columns are inputs and in which order
(issue 12 items 1, 2 and 4), and how the model is fed, decided by rehearsal (issue 13 item 1)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import relevo
from relevo.datasets import (
    CHURN_CATEGORICAL,
    CHURN_FEATURES,
    CHURN_ID,
    CHURN_NUMERIC,
    CHURN_TARGET,
)
from relevo.errors import InvalidInputError
from relevo.registry.inputs import FeatureOrderWarning, StrayTextWarning, as_matrix, stray_text


def numeric_pipeline() -> Pipeline:
    return make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=1000))


@pytest.fixture(scope="module")
def numpy_fitted(churn_frame: pd.DataFrame) -> Pipeline:
    """The numeric churn inputs fitted as a NumPy array: the model has no feature names."""
    x = churn_frame[CHURN_NUMERIC].to_numpy()
    return numeric_pipeline().fit(x, churn_frame[CHURN_TARGET])


@pytest.fixture(scope="module")
def numeric_reference(churn_frame: pd.DataFrame) -> pd.DataFrame:
    return churn_frame[[*CHURN_NUMERIC, CHURN_TARGET]]


def expected_proba(model: Any, frame: pd.DataFrame) -> np.ndarray:
    """The model's own answer on the training column order, as a NumPy array."""
    return np.asarray(model.predict_proba(frame[CHURN_NUMERIC].to_numpy()))


def scored(rv: relevo.Relevo, ref: str, frame: pd.DataFrame) -> np.ndarray:
    loaded = rv.registry.load(ref).model
    out = loaded.predict(frame)
    assert out.probabilities is not None
    return out.probabilities


# --------------------------------------------------------------- issue 12.1: the input order


def test_reversed_reference_columns_no_longer_disagree_silently(
    rv, numpy_fitted, numeric_reference
):
    """The issue's scenario: the same NumPy-fitted pipeline, the reference's columns reversed."""
    reversed_ref = numeric_reference[numeric_reference.columns[::-1]]
    with pytest.warns(FeatureOrderWarning) as record:
        guessed = rv.registry.register("rev", numpy_fitted, reversed_ref, target=CHURN_TARGET)
    message = str(record[0].message)
    # says plainly which order it took, and how to set it
    assert "satisfaction, support_calls, monthly_charges, tenure_months, age" in message
    assert "--features" in message and "features=[...]" in message
    assert guessed.flavor_options["input_order"] == "reference"

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # named in training order: nothing to warn about
        named = rv.registry.register(
            "rev", numpy_fitted, reversed_ref, target=CHURN_TARGET, features=CHURN_NUMERIC
        )
    assert named.signature.names == CHURN_NUMERIC
    assert named.flavor_options["input_order"] == "operator"
    # served with the columns in any order, the named version answers like the model itself
    np.testing.assert_array_equal(
        scored(rv, named.ref, reversed_ref), expected_proba(numpy_fitted, reversed_ref)
    )


def test_count_mismatch_is_an_error_with_both_counts(rv, relevo_home, numpy_fitted, churn_frame):
    with pytest.raises(InvalidInputError) as info:
        rv.registry.register("m", numpy_fitted, churn_frame, target=CHURN_TARGET)
    text = str(info.value)
    assert "takes 5 inputs" in text and "has 10 candidate columns" in text
    assert "--features" in text and "--exclude" in text
    assert rv.registry.list() == []
    assert not list((relevo_home / "artifacts").rglob("*.joblib"))


def test_exclude_drops_ids_and_features_picks_inputs(rv, numpy_fitted, churn_frame):
    with_id = churn_frame[[CHURN_ID, *CHURN_NUMERIC, CHURN_TARGET]]
    with pytest.warns(FeatureOrderWarning):
        version = rv.registry.register(
            "m", numpy_fitted, with_id, target=CHURN_TARGET, exclude=[CHURN_ID]
        )
    assert version.signature.names == CHURN_NUMERIC
    picked = rv.registry.register(
        "m", numpy_fitted, churn_frame, target=CHURN_TARGET, features=CHURN_NUMERIC
    )
    assert picked.signature.names == CHURN_NUMERIC
    np.testing.assert_array_equal(
        scored(rv, picked.ref, churn_frame), expected_proba(numpy_fitted, churn_frame)
    )


@pytest.mark.parametrize(
    ("kwargs", "needles"),
    [
        ({"features": CHURN_NUMERIC[:4]}, ["names 4 column(s)", "takes 5 inputs"]),
        ({"features": [*CHURN_NUMERIC[:4], "nope"]}, ["nope", "does not have"]),
        ({"features": ["age", "age"]}, ["age more than once"]),
        ({"exclude": ["nope"]}, ["nope", "--exclude"]),
        ({"features": CHURN_NUMERIC, "exclude": ["age"]}, ["age", "both an input"]),
    ],
)
def test_bad_features_or_exclude(rv, numpy_fitted, churn_frame, kwargs, needles):
    with pytest.raises(InvalidInputError) as info:
        rv.registry.register("m", numpy_fitted, churn_frame, target=CHURN_TARGET, **kwargs)
    for needle in needles:
        assert needle in str(info.value)
    assert rv.registry.list() == []


def test_features_must_agree_with_a_models_own_names(rv, churn_pipeline, churn_frame):
    with pytest.raises(InvalidInputError) as info:
        rv.registry.register(
            "churn", churn_pipeline, churn_frame, target=CHURN_TARGET, features=CHURN_NUMERIC
        )
    assert "does not match the model's own feature names" in str(info.value)
    assert ", ".join(CHURN_FEATURES) in str(info.value)
    with pytest.raises(InvalidInputError, match="declares as input"):
        rv.registry.register(
            "churn", churn_pipeline, churn_frame, target=CHURN_TARGET, exclude=["region"]
        )
    version = rv.registry.register(
        "churn",
        churn_pipeline,
        churn_frame,
        target=CHURN_TARGET,
        features=CHURN_FEATURES,
        exclude=[CHURN_ID],
    )
    assert version.signature.names == CHURN_FEATURES
    assert version.flavor_options["input_order"] == "model"


# ------------------------------------------------- issue 12.4: an id column in a numeric model


def test_text_column_fed_to_a_numeric_model_is_named(rv, churn_frame):
    filled = churn_frame.fillna({c: 0.0 for c in CHURN_NUMERIC})
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(filled[CHURN_NUMERIC].to_numpy(), filled[CHURN_TARGET])
    # five columns for five inputs, but one of them is the customer id
    with_id = filled[[CHURN_ID, *CHURN_NUMERIC[1:], CHURN_TARGET]]
    with pytest.raises(InvalidInputError) as info, pytest.warns(FeatureOrderWarning):
        rv.registry.register("m", model, with_id, target=CHURN_TARGET)
    text = str(info.value)
    assert "could not convert string to float" in text
    assert f"The column(s) {CHURN_ID} hold text" in text
    assert f"--exclude {CHURN_ID}" in text and "--features" in text
    assert rv.registry.list() == []


# ------------------------------------- issue 12.2 and 13.1: how the model is fed, by rehearsal


class ColumnsWrapper(ClassifierMixin, BaseEstimator):
    """A wrapper that selects its columns by name, fitted without feature_names_in_."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns

    def fit(self, x: pd.DataFrame, y: Any) -> ColumnsWrapper:
        self.inner_ = numeric_pipeline().fit(x[self.columns], y)
        self.classes_ = self.inner_.classes_
        return self

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        return self.inner_.predict_proba(x[self.columns])

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        return self.inner_.predict(x[self.columns])


def named_column_transformer(frame: pd.DataFrame) -> Pipeline:
    """String columns in a ColumnTransformer, fitted through a wrapper that drops the names."""
    preprocess = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), CHURN_NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore"), CHURN_CATEGORICAL),
        ]
    )
    return Pipeline([("pre", preprocess), ("clf", LogisticRegression(max_iter=1000))]).fit(
        frame[CHURN_FEATURES], frame[CHURN_TARGET]
    )


def test_wrapper_selecting_columns_by_name_registers_and_serves(rv, churn_frame):
    wrapper = ColumnsWrapper(CHURN_NUMERIC).fit(churn_frame, churn_frame[CHURN_TARGET])
    assert not hasattr(wrapper, "feature_names_in_")
    reference = churn_frame[[*CHURN_NUMERIC, CHURN_TARGET]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FeatureOrderWarning)
        version = rv.registry.register("wrap", wrapper, reference, target=CHURN_TARGET)
    assert version.flavor_options["input"] == "frame"  # it needs the names
    loaded = rv.registry.load(version.ref).model
    assert loaded.input_format == "frame"
    rows = churn_frame.head(64)
    expected = wrapper.predict_proba(rows)
    np.testing.assert_array_equal(loaded.predict(rows[CHURN_NUMERIC]).probabilities, expected)
    # the serving path's array call is wrapped in a DataFrame with the signature's names
    out = loaded.predict_array(as_matrix(rows[CHURN_NUMERIC]))
    np.testing.assert_allclose(out.probabilities, expected, rtol=1e-12)


def test_column_transformer_with_names_gets_a_frame(rv, churn_pipeline, churn_frame):
    version = rv.registry.register("churn", churn_pipeline, churn_frame, target=CHURN_TARGET)
    assert version.flavor_options["input"] == "frame"
    assert rv.registry.load(version.ref).model.input_format == "frame"


@pytest.mark.parametrize("fitted_on", ["frame", "array"])
def test_numeric_model_is_fed_an_array_without_warnings(rv, churn_frame, fitted_on):
    x = churn_frame[CHURN_NUMERIC]
    model = numeric_pipeline().fit(
        x if fitted_on == "frame" else x.to_numpy(), churn_frame[CHURN_TARGET]
    )
    version = rv.registry.register(
        "cheap", model, churn_frame, target=CHURN_TARGET, features=CHURN_NUMERIC
    )
    assert version.flavor_options["input"] == "array"
    loaded = rv.registry.load(version.ref).model
    assert loaded.input_format == "array" and loaded.input_names == CHURN_NUMERIC
    for n in (1, 64):
        rows = x.head(n)
        with warnings.catch_warnings():
            # sklearn's "X does not have valid feature names" must not reach serving
            warnings.simplefilter("error")
            got = loaded.predict_array(as_matrix(rows)).probabilities
            via_frame = loaded.predict(rows).probabilities
        want = model.predict_proba(rows if fitted_on == "frame" else rows.to_numpy())
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(via_frame, want)


def test_array_fitted_model_with_text_inputs_gets_its_values(rv, churn_frame):
    """Fitted on an object array with categories by position: fed the values, not names."""
    preprocess = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), [0, 1]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), [2]),
        ]
    )
    columns = ["age", "tenure_months", "contract"]
    model = Pipeline([("pre", preprocess), ("clf", LogisticRegression(max_iter=1000))]).fit(
        churn_frame[columns].to_numpy(dtype=object), churn_frame[CHURN_TARGET]
    )
    version = rv.registry.register(
        "mixed", model, churn_frame, target=CHURN_TARGET, features=columns
    )
    assert version.flavor_options["input"] == "frame"
    assert version.flavor_options["input_mode"] == "values"
    loaded = rv.registry.load(version.ref).model
    rows = churn_frame.head(64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = loaded.predict(rows[columns[::-1]]).probabilities
    np.testing.assert_array_equal(got, model.predict_proba(rows[columns].to_numpy(dtype=object)))


def test_versions_without_a_recorded_input_keep_the_old_behaviour(
    rv, numpy_fitted, churn_pipeline, churn_frame
):
    """Versions registered before the rehearsal: names -> frame; no names -> array."""
    from relevo.registry.flavors import get_flavor

    flavor = get_flavor("sklearn")
    cases = [(churn_pipeline, "frame"), (numpy_fitted, "array")]
    for estimator, expected in cases:
        version = rv.registry.register(
            "old",
            estimator,
            churn_frame,
            target=CHURN_TARGET,
            features=CHURN_FEATURES if expected == "frame" else CHURN_NUMERIC,
        )
        path = rv.registry.artifacts.path(version.artifact_path)
        assert flavor.load(path, {}).input_format == expected


def test_stray_text_in_a_column_the_model_takes_as_text_is_registered_with_a_warning(
    rv, churn_frame
):
    """A model that one-hot encodes `age` takes it as text: registered, as text, with a
    warning naming the cells that made it text."""
    frame = churn_frame.astype({"age": object})
    frame.loc[3, "age"] = "x"
    model = make_pipeline(
        ColumnTransformer([("codes", OneHotEncoder(handle_unknown="ignore"), ["age", "contract"])]),
        LogisticRegression(max_iter=1000),
    ).fit(frame[["age", "contract"]].astype(str), frame[CHURN_TARGET])
    reference = frame[["age", "contract", CHURN_TARGET]].astype({"age": str})
    with pytest.warns(StrayTextWarning) as caught:
        version = rv.registry.register("m", model, reference, target=CHURN_TARGET)
    (warning,) = caught
    assert "column 'age' of the reference data is registered as text, not numbers, because of " in (
        str(warning.message)
    )
    assert "row 3, column 'age': cannot parse 'x' as an integer" in str(warning.message)
    assert version.signature["age"].kind == "string"


def test_stray_text_is_not_claimed_where_text_is_common(churn_frame):
    frame = pd.DataFrame({"code": ["1", "2", "basic"] * 10, "name": churn_frame[CHURN_ID][:30]})
    assert stray_text(frame) == []
