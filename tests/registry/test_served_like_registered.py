"""A version answers served rows as the model answers the reference it was registered with:
integer columns stay integers, a pandas categorical stays one (on the reference's
categories), text missing as None stays None, an all-missing column is no column of numbers,
and a flavor serves the input form its rehearsal recorded."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import relevo
from relevo.serving.frame_check import check_frame
from relevo.serving.pool import load_runner
from relevo.serving.validation import Policy


def small(n: int = 200, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(
        {"a": rng.normal(size=n), "b": rng.integers(0, 10, n), "c": rng.normal(size=n)}
    )
    return x, (x["a"] + rng.normal(size=n) > 0).astype(int)


def served(rv: relevo.Relevo, ref: str, frame: pd.DataFrame) -> Any:
    """The version's raw output on `frame`, scored as `relevo predict`/`validate` score it."""
    runner = load_runner(rv, ref)
    problems: list[Any] = []
    checked = check_frame(frame, runner.plan, None, Policy(), 0, problems)
    assert checked is not None, problems
    return runner.raw(checked.part)


def test_an_mlflow_pyfunc_with_an_integer_input_serves_the_rows_it_registered_on(
    rv, tmp_path, mlflow_offline
):
    import mlflow.pyfunc

    class Doubler(mlflow.pyfunc.PythonModel):
        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            return model_input["a"].to_numpy() * 2 + model_input["b"].to_numpy()

    x, _ = small()
    path = tmp_path / "doubler"
    # the input example has an int64 column: MLflow's schema says `long`
    mlflow.pyfunc.save_model(path, python_model=Doubler(), input_example=x.head(3))
    version = rv.registry.register("doubler", path, x.assign(y=x["a"] * 2 + x["b"]), target="y")
    # registration rehearsed the model on these very rows; serving them must work too
    # (it failed: MlflowException "Can not safely convert float64 to int64" on every call)
    out = served(rv, version.ref, x)
    np.testing.assert_allclose(out.values, x["a"] * 2 + x["b"])


def test_a_lightgbm_model_with_a_categorical_column_is_served_on_its_categories(rv):
    import lightgbm as lgb

    x, y = small()
    x = x.assign(kind=pd.Categorical(np.random.default_rng(1).choice(["p", "q", "r"], len(x))))
    model = lgb.LGBMClassifier(n_estimators=5, num_leaves=7, verbose=-1, n_jobs=1).fit(x, y)
    version = rv.registry.register("cat", model, x.assign(y=y), target="y")
    # it was registered, then failed on every served row: ValueError "train and valid
    # dataset categorical_feature do not match"
    out = served(rv, version.ref, x.assign(kind=x["kind"].astype(str)))
    np.testing.assert_allclose(out.probabilities, model.predict_proba(x))


def test_none_in_a_text_column_is_served_as_the_model_saw_it(rv):
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame(
        {
            "f": rng.normal(size=n),
            # missing values as None, as rows from JSON, a database or Python lists have them
            "plan": pd.Series(
                np.where(rng.random(n) > 0.7, None, rng.choice(["a", "b"], n)), dtype=object
            ),
        }
    )
    y = ((frame["f"] > 0) ^ frame["plan"].isna()).astype(int)
    model = make_pipeline(
        ColumnTransformer(
            [("k", OneHotEncoder(handle_unknown="ignore"), ["plan"]), ("n", "passthrough", ["f"])]
        ),
        LogisticRegression(),
    ).fit(frame, y)
    version = rv.registry.register("plans", model, frame.assign(y=y), target="y")
    # None became NaN, an unknown category: probabilities moved by up to ~0.1
    out = served(rv, version.ref, frame)
    np.testing.assert_allclose(out.probabilities, model.predict_proba(frame), atol=1e-12)


def test_an_xgboost_version_is_served_the_way_its_rehearsal_recorded(rv):
    import xgboost as xgb

    x, y = small()
    model = xgb.XGBClassifier(n_estimators=3, n_jobs=1).fit(x, y)
    version = rv.registry.register("xgb", model, x.assign(y=y), target="y")
    assert version.flavor_options["input"] == "array"  # what `models show` says
    # XGBoostFlavor.load ignored the recorded mode: served as a DataFrame
    assert load_runner(rv, version.ref).input_format == "array"


def test_a_column_missing_from_every_reference_row_does_not_refuse_text(rv, tmp_path):
    from relevo.serving.validation import validate_rows

    rng = np.random.default_rng(0)
    train = pd.DataFrame({"f": rng.normal(size=200), "promo": rng.choice(["spring", "fall"], 200)})
    y = (train["f"] > 0).astype(int)
    model = make_pipeline(
        ColumnTransformer(
            [
                (
                    "k",
                    make_pipeline(
                        SimpleImputer(strategy="constant", fill_value="none"),
                        OneHotEncoder(handle_unknown="ignore"),
                    ),
                    ["promo"],
                ),
                ("n", "passthrough", ["f"]),
            ]
        ),
        LogisticRegression(),
    ).fit(train, y)
    reference = tmp_path / "reference.csv"
    train.assign(promo=np.nan, y=y).to_csv(reference, index=False)  # no promo this month
    version = rv.registry.register("promo", model, reference, target="y")
    # nothing in the reference says the column holds numbers; it was typed "number" and
    # the text the model was trained on is refused ("expected a number, got 'spring'")
    plan = load_runner(rv, version.ref).plan
    validate_rows([{"f": 0.1, "promo": "spring"}], plan)


def test_a_lightgbm_model_fitted_on_columns_with_spaces_registers(rv):
    import lightgbm as lgb

    x, y = small()
    x = x.rename(columns={"a": "mean radius"})
    model = lgb.LGBMClassifier(n_estimators=5, num_leaves=7, verbose=-1, n_jobs=1).fit(x, y)
    # it was refused: "the model needs 1 column(s) the reference data does not have:
    # mean_radius"
    version = rv.registry.register("spaces", model, x.assign(y=y), target="y")
    out = served(rv, version.ref, x)
    np.testing.assert_allclose(out.probabilities, model.predict_proba(x))


def test_an_onnx_file_with_one_input_per_column_named_with_spaces_registers(rv, tmp_path):
    from skl2onnx import to_onnx

    x, y = small()
    x = x.rename(columns={"a": "mean radius"})
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    path = tmp_path / "columns.onnx"
    path.write_bytes(to_onnx(pipe, x[:1], options={"zipmap": False}).SerializeToString())
    # it was refused: "the model needs 1 column(s) the reference data does not have:
    # mean_radius"
    version = rv.registry.register("onnx-spaces", path, x.assign(y=y), target="y")
    assert version.task == "binary"
    assert [c.name for c in version.signature.columns] == ["mean radius", "b", "c"]
    out = served(rv, version.ref, x)
    np.testing.assert_allclose(out.probabilities, pipe.predict_proba(x), atol=1e-5)
