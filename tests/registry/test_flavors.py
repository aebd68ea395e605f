"""Model flavors: each library's artifacts are detected, loaded and predict like the original."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from relevo.errors import InvalidInputError
from relevo.registry.flavors import Flavor, detect_flavor, flavor_for_object, get_flavor

Data = tuple[pd.DataFrame, pd.Series]


@pytest.fixture(scope="module")
def cancer() -> Data:
    """Binary classification: 569 rows, 30 float columns whose names contain spaces."""
    bunch = load_breast_cancer(as_frame=True)
    return bunch.data, bunch.target


@pytest.fixture(scope="module")
def iris() -> Data:
    """Multiclass: 3 classes, 4 columns."""
    bunch = load_iris(as_frame=True)
    return bunch.data, bunch.target


@pytest.fixture(scope="module")
def diabetes() -> Data:
    """Regression: 10 columns."""
    bunch = load_diabetes(as_frame=True)
    return bunch.data, bunch.target


def load(path: Path, expected: str) -> Any:
    """Detect `path`, check the flavor is `expected`, and load it."""
    flavor = detect_flavor(path)
    assert flavor.name == expected
    return flavor.load(path, {})


def assert_proba(model: Any, frame: pd.DataFrame, expected: np.ndarray, rtol: float = 1e-7) -> None:
    out = model.predict(frame)
    assert out.values is None
    assert out.probabilities is not None
    assert out.probabilities.shape == expected.shape
    np.testing.assert_allclose(out.probabilities, expected, rtol=rtol, atol=rtol)


def assert_values(
    model: Any, frame: pd.DataFrame, expected: np.ndarray, rtol: float = 1e-7
) -> None:
    out = model.predict(frame)
    assert out.probabilities is None
    assert out.values is not None
    assert out.values.shape == (len(frame),)
    np.testing.assert_allclose(out.values, np.asarray(expected).ravel(), rtol=rtol, atol=rtol)


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def assert_invalid(path: Path, flavor: Flavor | None = None) -> None:
    """Loading `path` raises InvalidInputError whose message names the file."""
    flavor = flavor or detect_flavor(path)
    with pytest.raises(InvalidInputError) as info:
        flavor.load(path, {})
    assert path.name in str(info.value)


# --- detection -------------------------------------------------------------------------------


def test_unknown_file_is_rejected(tmp_path: Path, cancer: Data) -> None:
    csv = tmp_path / "data.csv"
    cancer[0].head().to_csv(csv)
    with pytest.raises(InvalidInputError, match="cannot tell the flavor"):
        detect_flavor(csv)
    with pytest.raises(InvalidInputError, match="not found"):
        detect_flavor(tmp_path / "missing.onnx")


def test_plain_json_and_text_are_not_models(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"a": 1}')
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "folder").mkdir()
    for name in ("config.json", "notes.txt", "folder"):
        with pytest.raises(InvalidInputError):
            detect_flavor(tmp_path / name)


# --- scikit-learn: joblib and skops ----------------------------------------------------------


def test_sklearn_joblib_binary_and_multiclass(tmp_path: Path, cancer: Data, iris: Data) -> None:
    import joblib

    x, y = cancer
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    joblib.dump(pipe, tmp_path / "cancer.joblib")
    model = load(tmp_path / "cancer.joblib", "sklearn")
    assert model.task == "binary" and model.classes == [0, 1]
    assert model.feature_names == list(x.columns)
    assert_proba(model, x, pipe.predict_proba(x))

    xi, yi = iris
    labels = yi.map({0: "setosa", 1: "versicolor", 2: "virginica"})
    clf = LogisticRegression(max_iter=1000).fit(xi, labels)
    joblib.dump(clf, tmp_path / "iris.pkl")
    model = load(tmp_path / "iris.pkl", "sklearn")
    assert model.task == "multiclass"
    assert model.classes == ["setosa", "versicolor", "virginica"]
    assert_proba(model, xi, clf.predict_proba(xi))


def test_sklearn_regression_and_unnamed_features(tmp_path: Path, diabetes: Data) -> None:
    import joblib

    x, y = diabetes
    reg = Ridge().fit(x.to_numpy(), y)
    joblib.dump(reg, tmp_path / "model.bin")  # no known suffix: found by the pickle header
    model = load(tmp_path / "model.bin", "sklearn")
    assert model.task == "regression" and model.feature_names is None
    assert_values(model, x, reg.predict(x.to_numpy()))


def test_skops(tmp_path: Path, cancer: Data) -> None:
    import skops.io as sio

    x, y = cancer
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    sio.dump(pipe, tmp_path / "model.skops")
    flavor = detect_flavor(tmp_path / "model.skops")
    assert flavor.name == "skops"
    options = flavor.registration_options(tmp_path / "model.skops")
    assert isinstance(options["trusted_types"], list)
    model = flavor.load(tmp_path / "model.skops", options)
    assert_proba(model, x, pipe.predict_proba(x))


# --- XGBoost ---------------------------------------------------------------------------------


def test_xgboost_sklearn_wrapper_files(
    tmp_path: Path, cancer: Data, iris: Data, diabetes: Data
) -> None:
    import xgboost as xgb

    x, y = cancer
    clf = xgb.XGBClassifier(n_estimators=20, max_depth=3).fit(x, y)
    clf.save_model(tmp_path / "cancer.json")
    model = load(tmp_path / "cancer.json", "xgboost")
    assert model.task == "binary" and model.classes == [0, 1]
    assert model.feature_names == list(x.columns)
    assert_proba(model, x, clf.predict_proba(x))
    # the model's own column order is used, whatever the frame's order
    assert_proba(model, x[x.columns[::-1]], clf.predict_proba(x))

    xi, yi = iris
    multi = xgb.XGBClassifier(n_estimators=10, max_depth=2).fit(xi.to_numpy(), yi)
    multi.save_model(tmp_path / "iris.ubj")
    model = load(tmp_path / "iris.ubj", "xgboost")
    assert model.task == "multiclass" and model.classes == [0, 1, 2]
    assert model.feature_names is None
    assert_proba(model, xi, multi.predict_proba(xi.to_numpy()))

    xd, yd = diabetes
    reg = xgb.XGBRegressor(n_estimators=20, max_depth=3).fit(xd, yd)
    reg.save_model(tmp_path / "diabetes.json")
    model = load(tmp_path / "diabetes.json", "xgboost")
    assert model.task == "regression" and model.classes is None
    assert_values(model, xd, reg.predict(xd), rtol=1e-6)


@pytest.mark.parametrize(
    ("objective", "task"),
    [
        ("binary:logistic", "binary"),
        ("binary:logitraw", "binary"),
        ("reg:squarederror", "regression"),
    ],
)
def test_xgboost_native_booster_binary(
    tmp_path: Path, cancer: Data, objective: str, task: str
) -> None:
    import xgboost as xgb

    x, y = cancer
    booster = xgb.train(
        {"objective": objective, "max_depth": 3}, xgb.DMatrix(x, label=y), num_boost_round=10
    )
    booster.save_model(tmp_path / "booster.json")
    model = load(tmp_path / "booster.json", "xgboost")
    assert model.task == task
    assert model.feature_names == list(x.columns)
    raw = booster.predict(xgb.DMatrix(x))
    if task == "binary":
        assert model.classes == [0, 1]
        p1 = raw if objective == "binary:logistic" else 1 / (1 + np.exp(-raw))
        assert_proba(model, x, np.column_stack([1 - p1, p1]), rtol=1e-6)
    else:
        assert_values(model, x, raw, rtol=1e-6)


def test_xgboost_native_booster_multiclass(tmp_path: Path, iris: Data) -> None:
    import xgboost as xgb

    x, y = iris
    params = {"objective": "multi:softprob", "num_class": 3, "max_depth": 2}
    soft = xgb.train(params, xgb.DMatrix(x.to_numpy(), label=y), num_boost_round=5)
    soft.save_model(tmp_path / "softprob.ubj")
    model = load(tmp_path / "softprob.ubj", "xgboost")
    assert model.task == "multiclass" and model.classes == [0, 1, 2]
    assert model.feature_names is None
    assert_proba(model, x, soft.predict(xgb.DMatrix(x.to_numpy())), rtol=1e-6)

    params["objective"] = "multi:softmax"
    hard = xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=5)
    hard.save_model(tmp_path / "softmax.json")
    model = load(tmp_path / "softmax.json", "xgboost")
    out = model.predict(x)
    assert out.probabilities is not None
    np.testing.assert_allclose(out.probabilities.sum(axis=1), 1.0)
    np.testing.assert_array_equal(out.probabilities.argmax(axis=1), hard.predict(xgb.DMatrix(x)))


def test_xgboost_save_round_trip(tmp_path: Path, cancer: Data) -> None:
    import xgboost as xgb

    x, y = cancer
    clf = xgb.XGBClassifier(n_estimators=10, max_depth=2).fit(x, y)
    flavor = flavor_for_object(clf)
    assert flavor.name == "xgboost"
    path = flavor.save(clf, tmp_path)
    assert path.name == "model.json"
    assert_proba(load(path, "xgboost"), x, clf.predict_proba(x))

    booster = clf.get_booster()
    assert flavor.can_save(booster)
    (tmp_path / "b").mkdir()
    path = flavor.save(booster, tmp_path / "b")
    p1 = booster.predict(xgb.DMatrix(x))
    assert_proba(load(path, "xgboost"), x, np.column_stack([1 - p1, p1]))

    assert not flavor.can_save(xgb.XGBClassifier())  # not fitted
    assert not flavor.can_save(LogisticRegression())


@pytest.mark.parametrize("name", ["model.json", "model.ubj"])
def test_xgboost_corrupted_files(tmp_path: Path, cancer: Data, name: str) -> None:
    import xgboost as xgb

    x, y = cancer
    xgb.XGBClassifier(n_estimators=5).fit(x, y).save_model(tmp_path / name)
    assert_invalid(truncate(tmp_path / name))


@pytest.mark.slow
def test_native_files_are_first_read_in_a_child_process(
    tmp_path: Path, cancer: Data, iris: Data
) -> None:
    """XGBoost and LightGBM can crash the process on a damaged file: registration reads it in a
    child process first."""
    import lightgbm as lgb
    import xgboost as xgb

    x, y = cancer
    xgb.XGBClassifier(n_estimators=5).fit(x, y).save_model(tmp_path / "model.ubj")
    xgb_flavor = get_flavor("xgboost")
    assert xgb_flavor.registration_options(tmp_path / "model.ubj") == {}
    with pytest.raises(InvalidInputError, match=r"model\.ubj"):
        xgb_flavor.registration_options(truncate(tmp_path / "model.ubj", 0.7))

    xi, yi = iris
    booster = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(xi, yi).booster_
    booster.save_model(tmp_path / "model.txt")
    assert get_flavor("lightgbm").registration_options(tmp_path / "model.txt") == {}


def test_child_process_crash_is_an_invalid_input(tmp_path: Path) -> None:
    from relevo.registry.flavors.lightgbm import load_in_child

    path = tmp_path / "model.bin"
    path.write_bytes(b"junk")
    with pytest.raises(InvalidInputError, match=r"model\.bin is damaged: .*crashed .*SIGSEGV"):
        load_in_child(path, "import ctypes\nctypes.string_at(0)", "a test model")
    with pytest.raises(InvalidInputError, match=r"cannot load model\.bin as a test model: bad"):
        load_in_child(path, "raise ValueError('bad\\nmore')", "a test model")
    load_in_child(path, "open(sys.argv[1]).read()", "a test model")


# --- LightGBM --------------------------------------------------------------------------------


def test_lightgbm_classifier_files(tmp_path: Path, cancer: Data, iris: Data) -> None:
    import lightgbm as lgb

    x, y = cancer
    clf = lgb.LGBMClassifier(n_estimators=20, verbose=-1).fit(x, y)
    clf.booster_.save_model(tmp_path / "cancer.txt")
    model = load(tmp_path / "cancer.txt", "lightgbm")
    assert model.task == "binary" and model.classes == [0, 1]
    # LightGBM stores "mean radius" as "mean_radius"; the frame's own names still work
    assert model.feature_names == [c.replace(" ", "_") for c in x.columns]
    assert_proba(model, x, clf.predict_proba(x))
    assert_proba(model, x[x.columns[::-1]], clf.predict_proba(x))
    with pytest.raises(InvalidInputError) as info:
        model.predict(x.drop(columns=["mean radius"]))
    assert [p.column for p in info.value.problems] == ["mean_radius"]

    xi, yi = iris
    multi = lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(xi.to_numpy(), yi)
    multi.booster_.save_model(tmp_path / "iris.lgb")
    model = load(tmp_path / "iris.lgb", "lightgbm")
    assert model.task == "multiclass" and model.classes == [0, 1, 2]
    assert model.feature_names is None  # trained on an array: Column_0.. are not real names
    assert_proba(model, xi, multi.predict_proba(xi.to_numpy()))


def test_lightgbm_regression_and_native_booster(tmp_path: Path, diabetes: Data) -> None:
    import lightgbm as lgb

    x, y = diabetes
    booster = lgb.train(
        {"objective": "regression", "verbose": -1}, lgb.Dataset(x, label=y), num_boost_round=20
    )
    booster.save_model(tmp_path / "booster.model")  # any suffix: found by its first bytes
    model = load(tmp_path / "booster.model", "lightgbm")
    assert model.task == "regression" and model.classes is None
    assert model.feature_names == list(x.columns)
    assert_values(model, x, booster.predict(x))


def test_lightgbm_save_round_trip(tmp_path: Path, cancer: Data, iris: Data) -> None:
    import lightgbm as lgb

    x, y = cancer
    clf = lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(x, y)
    flavor = flavor_for_object(clf)
    assert flavor.name == "lightgbm"
    path = flavor.save(clf, tmp_path)
    assert_proba(load(path, "lightgbm"), x, clf.predict_proba(x))
    assert flavor.can_save(clf.booster_)

    # labels other than 0..k-1 cannot live in a native file: the sklearn flavor takes them
    xi, yi = iris
    named = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(xi, yi.map(dict(enumerate("abc"))))
    assert not flavor.can_save(named)
    assert flavor_for_object(named).name == "sklearn"
    assert not flavor.can_save(lgb.LGBMClassifier())  # not fitted


@pytest.mark.parametrize("keep", [0.05, 0.3, 0.5, 0.9, 0.99])
def test_lightgbm_truncated_file_raises_instead_of_aborting(
    tmp_path: Path, cancer: Data, keep: float
) -> None:
    import lightgbm as lgb

    x, y = cancer
    clf = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(x, y)
    clf.booster_.save_model(tmp_path / "model.txt")
    data = (tmp_path / "model.txt").read_bytes()
    # cut inside the trees (LightGBM itself would abort the process there)
    end = data.index(b"end of trees")
    (tmp_path / "model.txt").write_bytes(data[: int(end * keep)])
    assert_invalid(tmp_path / "model.txt", get_flavor("lightgbm"))


# --- ONNX ------------------------------------------------------------------------------------


def test_onnx_single_input_classifiers(tmp_path: Path, cancer: Data, iris: Data) -> None:
    from skl2onnx import to_onnx

    x, y = cancer
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    onx = to_onnx(pipe, x.to_numpy()[:1].astype(np.float32))  # probabilities as a ZipMap
    (tmp_path / "cancer.onnx").write_bytes(onx.SerializeToString())
    model = load(tmp_path / "cancer.onnx", "onnx")
    assert model.task == "binary" and model.classes == [0, 1]
    assert model.feature_names is None
    assert_proba(model, x, pipe.predict_proba(x), rtol=1e-5)

    from sklearn.ensemble import RandomForestClassifier

    xi, yi = iris
    labels = yi.map({0: "setosa", 1: "versicolor", 2: "virginica"})
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(xi, labels)
    onx = to_onnx(forest, xi.to_numpy()[:1].astype(np.float32), options={"zipmap": False})
    (tmp_path / "iris.onnx").write_bytes(onx.SerializeToString())
    model = load(tmp_path / "iris.onnx", "onnx")
    assert model.task == "multiclass"
    assert model.classes == ["setosa", "versicolor", "virginica"]
    assert_proba(model, xi, forest.predict_proba(xi), rtol=1e-5)
    with pytest.raises(InvalidInputError, match="expects 4 feature columns"):
        model.predict(xi.iloc[:, :3])


def test_onnx_regressor(tmp_path: Path, diabetes: Data) -> None:
    from skl2onnx import to_onnx

    x, y = diabetes
    reg = Ridge().fit(x, y)
    (tmp_path / "diabetes.onnx").write_bytes(to_onnx(reg, x.to_numpy()[:1]).SerializeToString())
    model = load(tmp_path / "diabetes.onnx", "onnx")
    assert model.task == "regression" and model.classes is None
    assert_values(model, x, reg.predict(x), rtol=1e-5)


def test_onnx_one_input_per_column(tmp_path: Path, cancer: Data) -> None:
    from skl2onnx import to_onnx
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    x, y = cancer
    frame = x[["mean radius", "mean texture", "worst area"]].astype(np.float32)
    frame["size"] = np.where(x["mean area"] > 600, "big", "small")
    frame["count"] = (x["mean radius"] * 10).astype(np.int64)
    pipe = make_pipeline(
        ColumnTransformer(
            [
                ("num", StandardScaler(), ["mean radius", "mean texture", "worst area", "count"]),
                ("cat", OneHotEncoder(), ["size"]),
            ]
        ),
        LogisticRegression(max_iter=1000),
    ).fit(frame, y)
    onx = to_onnx(pipe, frame[:1], options={"zipmap": False})
    (tmp_path / "columns.onnx").write_bytes(onx.SerializeToString())
    model = load(tmp_path / "columns.onnx", "onnx")
    assert model.task == "binary" and model.classes == [0, 1]
    # skl2onnx rewrites the input names; the frame's own names are matched to them
    assert model.feature_names == ["mean_radius", "mean_texture", "worst_area", "size", "count"]
    assert_proba(model, frame, pipe.predict_proba(frame), rtol=1e-5)
    shuffled = frame[["count", "size", "worst area", "mean texture", "mean radius"]]
    assert_proba(model, shuffled, pipe.predict_proba(frame), rtol=1e-5)


def test_onnx_corrupted_file(tmp_path: Path, cancer: Data) -> None:
    from skl2onnx import to_onnx

    x, y = cancer
    reg = Ridge().fit(x, y)
    path = tmp_path / "broken.onnx"
    path.write_bytes(to_onnx(reg, x.to_numpy()[:1]).SerializeToString())
    assert_invalid(truncate(path))
    assert not get_flavor("onnx").can_save(reg)


# --- MLflow ----------------------------------------------------------------------------------


class ProbaModel:
    """Stands in for any library: a pyfunc returning class probabilities (or values)."""

    def __init__(self, estimator: Any, proba: bool) -> None:
        self.estimator = estimator
        self.proba = proba

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        if self.proba:
            return np.asarray(self.estimator.predict_proba(frame))
        return np.asarray(self.estimator.predict(frame))


def test_mlflow_sklearn_flavor(tmp_path: Path, mlflow_offline: Any, iris: Data) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    x, y = iris
    labels = y.map({0: "setosa", 1: "versicolor", 2: "virginica"})
    clf = LogisticRegression(max_iter=1000).fit(x.to_numpy(), labels)
    path = tmp_path / "iris_model"
    mlflow.sklearn.save_model(
        clf, path, pip_requirements=[], signature=infer_signature(x, clf.predict(x.to_numpy()))
    )
    model = load(path, "mlflow")
    assert model.task == "multiclass"
    assert model.classes == ["setosa", "versicolor", "virginica"]
    assert model.feature_names == list(x.columns)  # from the signature
    assert_proba(model, x[x.columns[::-1]], clf.predict_proba(x.to_numpy()))
    assert not get_flavor("mlflow").can_save(clf)


def test_mlflow_pyfunc(tmp_path: Path, mlflow_offline: Any, cancer: Data, diabetes: Data) -> None:
    import mlflow.pyfunc

    class Wrapped(mlflow.pyfunc.PythonModel):
        def __init__(self, predict: ProbaModel) -> None:
            self._predict = predict

        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            return self._predict(model_input)

    x, y = cancer
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    path = tmp_path / "cancer_pyfunc"
    mlflow.pyfunc.save_model(
        path,
        python_model=Wrapped(ProbaModel(clf, True)),
        input_example=x.head(3),
        pip_requirements=[],
    )
    model = load(path, "mlflow")
    assert model.task == "binary" and model.classes == [0, 1]
    assert model.feature_names == list(x.columns)
    assert_proba(model, x, clf.predict_proba(x))

    xd, yd = diabetes
    reg = Ridge().fit(xd, yd)
    path = tmp_path / "diabetes_pyfunc"
    mlflow.pyfunc.save_model(
        path,
        python_model=Wrapped(ProbaModel(reg, False)),
        input_example=xd.head(3),
        pip_requirements=[],
    )
    model = load(path, "mlflow")
    assert model.task == "regression" and model.classes is None
    assert_values(model, xd, reg.predict(xd))


def test_mlflow_broken_directories(tmp_path: Path, mlflow_offline: Any, diabetes: Data) -> None:
    import mlflow.sklearn

    x, y = diabetes
    path = tmp_path / "reg_model"
    mlflow.sklearn.save_model(Ridge().fit(x, y), path, pip_requirements=[])
    for child in path.iterdir():
        if child.name.startswith("model."):
            truncate(child)
    assert_invalid(path)

    garbage = tmp_path / "garbage_model"
    garbage.mkdir()
    (garbage / "MLmodel").write_text("flavors: [unclosed\n")
    assert_invalid(garbage)

    # an MLmodel file on its own is not a model directory
    with pytest.raises(InvalidInputError):
        detect_flavor(garbage / "MLmodel")


# --- the other flavors' corrupted files ------------------------------------------------------


def test_sklearn_and_skops_corrupted_files(tmp_path: Path, diabetes: Data) -> None:
    import joblib
    import skops.io as sio

    x, y = diabetes
    reg = Ridge().fit(x, y)
    joblib.dump(reg, tmp_path / "model.joblib")
    assert_invalid(truncate(tmp_path / "model.joblib"))
    sio.dump(reg, tmp_path / "model.skops")
    assert_invalid(truncate(tmp_path / "model.skops"))
