"""The validation gate's core: metrics checked against scikit-learn on the same rows, bounds on
either side, the comparison with another version, and a sample that does not fit."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_iris
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from relevo.datasets import CHURN_FEATURES, CHURN_TARGET, make_churn
from relevo.errors import InvalidInputError
from relevo.serving.diagnosis import MAX_PROBLEMS
from relevo.validation import Bound, validate_version


@pytest.fixture
def sample() -> pd.DataFrame:
    return make_churn(800, seed=12)


def test_metrics_are_scikit_learns_on_the_served_outputs(rv, churn_pipeline, churn_frame, sample):
    rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    report = validate_version(rv, "churn:1", sample, latency_calls=20)
    y = sample[CHURN_TARGET]
    p = churn_pipeline.predict_proba(sample[CHURN_FEATURES])[:, 1]
    assert report.passed and report.target == "churned"  # the registered target, found
    assert report.metrics["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert report.metrics["log_loss"] == pytest.approx(log_loss(y, p), abs=1e-9)
    assert report.metrics["accuracy"] == accuracy_score(y, p >= 0.5)
    assert report.metrics["f1"] == pytest.approx(f1_score(y, p >= 0.5))
    assert report.latency is not None and report.latency.single_calls == 20


def test_floors_and_ceilings_are_symmetrical(rv, churn_pipeline, churn_frame, sample):
    rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    auc = validate_version(rv, "churn:1", sample, latency_calls=5).metrics["roc_auc"]
    bounds = [
        Bound.parse(f"roc_auc={auc - 0.01}", upper=False),  # passes
        Bound.parse(f"roc_auc={auc - 0.01}", upper=True),  # a ceiling under the value: fails
        Bound.parse("log_loss=0.01", upper=True),  # fails: a log loss that low is out of reach
    ]
    report = validate_version(rv, "churn:1", sample, bounds=bounds, latency_calls=5)
    verdicts = [(c.name, c.limit, c.passed) for c in report.checks[1:]]
    assert verdicts == [
        ("roc_auc", f">= {auc - 0.01:g}", True),
        ("roc_auc", f"<= {auc - 0.01:g}", False),
        ("log_loss", "<= 0.01", False),
    ]
    assert not report.passed


def test_a_dummy_model_fails_its_floor_and_the_comparison(rv, churn_pipeline, churn_frame, sample):
    rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    dummy = DummyClassifier().fit(churn_frame[CHURN_FEATURES], churn_frame[CHURN_TARGET])
    rv.registry.register("churn-dummy", dummy, churn_frame, target="churned")
    report = validate_version(
        rv,
        "churn-dummy:1",
        sample,
        bounds=[Bound("roc_auc", 0.7)],
        against="churn:1",
        latency_calls=5,
    )
    assert not report.passed
    assert [c.name for c in report.failed] == ["roc_auc", "roc_auc vs churn:1"]
    assert report.metrics["roc_auc"] == 0.5
    p = churn_pipeline.predict_proba(sample[CHURN_FEATURES])[:, 1]
    assert report.against_metrics["roc_auc"] == pytest.approx(
        roc_auc_score(sample[CHURN_TARGET], p), abs=1e-12
    )
    # the other way round the good model is not worse: it passes
    back = validate_version(rv, "churn:1", sample, against="churn-dummy:1", latency_calls=5)
    assert back.passed and back.checks[-1].name == "roc_auc vs churn-dummy:1"


def test_the_tolerance_lets_an_equal_model_pass(rv, churn_pipeline, churn_frame, sample):
    rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    report = validate_version(
        rv, "churn:2", sample, against="churn:1", tolerance=0.0, latency_calls=5
    )
    assert report.passed and report.checks[-1].passed


def test_rows_that_do_not_fit_are_named_and_nothing_else_is_measured(
    rv, churn_pipeline, churn_frame, sample
):
    rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    broken = sample.astype({"monthly_charges": object})
    broken.loc[5, "monthly_charges"] = "n/a"
    report = validate_version(rv, "churn:1", broken, bounds=[Bound("roc_auc", 0.5)])
    assert [c.name for c in report.checks] == ["signature"] and not report.passed
    assert report.problems[0].row == 5 and report.problems[0].column == "monthly_charges"
    assert report.metrics == {} and report.latency is None


def test_a_text_column_missing_from_a_large_sample_is_named_once(rv, churn_pipeline, churn_frame):
    rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    sample = make_churn(10_050, seed=13).drop(columns="region")  # checked 10,000 rows at a time
    report = validate_version(rv, "churn:1", sample)
    assert [c.name for c in report.checks] == ["signature"] and not report.passed
    assert [str(p) for p in report.problems] == [
        "column 'region': required column is missing from the file"
    ]
    assert report.problem_count == 1


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_an_infinite_value_fails_the_signature_check_naming_it(
    rv, churn_pipeline, churn_frame, sample, value
):
    """Not sklearn's "Input X contains infinity" from inside the model; a missing value (NaN)
    where the reference had some is still fine."""
    rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    sample.loc[4, "monthly_charges"] = value
    sample.loc[7, "satisfaction"] = np.nan
    report = validate_version(rv, "churn:1", sample, bounds=[Bound("roc_auc", 0.5)])
    assert [c.name for c in report.checks] == ["signature"] and not report.passed
    assert [str(p) for p in report.problems] == [
        "row 4, column 'monthly_charges': not a finite number"
    ]
    assert report.problem_count == 1


def test_the_problem_count_is_every_bad_cell_not_the_listed_ones(rv, churn_pipeline, churn_frame):
    rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    sample = make_churn(1000, seed=12).astype({"age": object})
    sample["age"] = "x"
    sample.loc[:249, "monthly_charges"] = np.inf
    sample.loc[500:649, "tenure_months"] = np.nan  # the reference had no gaps there
    report = validate_version(rv, "churn:1", sample)
    assert report.problem_count == 1000 + 250 + 150
    assert report.checks[0].value == 1400
    assert 0 < len(report.problems) <= MAX_PROBLEMS


def test_the_latency_step_sends_rows_as_a_client_reading_by_the_signature(rv):
    """A string column given as numbers fits the signature (their text, as batch scoring
    takes them): the latency step must not then refuse them by the JSON rules."""
    rng = np.random.default_rng(0)
    plan = rng.choice(["1", "2", "10"], 400)
    frame = pd.DataFrame({"plan": plan, "x": rng.normal(size=400)})
    frame["churned"] = ((plan == "1") ^ (rng.random(400) < 0.1)).astype(int)
    model = make_pipeline(
        ColumnTransformer(
            [("c", OneHotEncoder(handle_unknown="ignore"), ["plan"])], remainder="passthrough"
        ),
        LogisticRegression(),
    ).fit(frame[["plan", "x"]], frame["churned"])
    rv.registry.register("plan", model, frame, target="churned")
    numbers = frame.assign(plan=frame["plan"].astype(int))
    report = validate_version(rv, "plan:1", numbers, latency_calls=5)
    assert report.passed and report.latency is not None
    p = model.predict_proba(frame[["plan", "x"]])[:, 1]
    assert report.metrics["roc_auc"] == pytest.approx(roc_auc_score(frame["churned"], p))


def test_multiclass_macro_metrics_are_scikit_learns_when_a_class_is_absent(rv):
    """Macro averages over the classes in the labels or the predictions, as scikit-learn's
    default: a class the sample lacks does not add a 0 (iris without setosa: f1 0.64)."""
    x, y = load_iris(return_X_y=True, as_frame=True)
    frame = x.assign(species=np.array(["setosa", "versicolor", "virginica"])[y])
    model = LogisticRegression(max_iter=1000).fit(x, frame["species"])
    rv.registry.register("iris", model, frame, target="species")
    sample = frame[frame["species"] != "setosa"]
    report = validate_version(rv, "iris:1", sample, latency_calls=5)
    truth, predicted = sample["species"], model.predict(sample[x.columns])
    assert report.metrics["f1"] == pytest.approx(f1_score(truth, predicted, average="macro"))
    assert report.metrics["f1"] > 0.9
    assert report.metrics["precision"] == pytest.approx(
        precision_score(truth, predicted, average="macro")
    )
    assert report.metrics["recall"] == pytest.approx(
        recall_score(truth, predicted, average="macro")
    )
    every = validate_version(rv, "iris:1", frame, latency_calls=5)
    assert every.metrics["f1"] == pytest.approx(
        f1_score(frame["species"], model.predict(x), average="macro")
    )


def test_a_regressor_is_bounded_by_mae_rmse_and_r2(rv):
    data = load_diabetes(as_frame=True).frame
    train, test = data.iloc[:300], data.iloc[300:]
    features = [c for c in data.columns if c != "target"]
    model = LinearRegression().fit(train[features], train["target"])
    rv.registry.register("diabetes", model, train, target="target")
    bounds = [Bound("RMSE", 70.0, upper=True), Bound("r2", 0.3), Bound("mae", 1.0, upper=True)]
    report = validate_version(rv, "diabetes:1", test, bounds=bounds, latency_calls=5)
    pred = model.predict(test[features])
    assert report.metrics["mae"] == pytest.approx(mean_absolute_error(test["target"], pred))
    assert report.metrics["rmse"] == pytest.approx(math.sqrt(np.mean((test["target"] - pred) ** 2)))
    assert report.metrics["r2"] == pytest.approx(r2_score(test["target"], pred))
    assert [c.passed for c in report.checks[1:]] == [True, True, False]


def test_what_cannot_be_checked_is_an_input_error(rv, churn_pipeline, churn_frame, sample):
    rv.registry.register("churn", churn_pipeline, churn_frame)  # no target registered
    unlabelled = sample.drop(columns=CHURN_TARGET)
    with pytest.raises(InvalidInputError, match="need labels"):
        validate_version(rv, "churn:1", unlabelled, bounds=[Bound("roc_auc", 0.5)])
    with pytest.raises(InvalidInputError, match="'rmse': not a metric of a binary model"):
        validate_version(rv, "churn:1", sample, target="churned", bounds=[Bound("rmse", 1)])
    with pytest.raises(InvalidInputError, match="'nope' is not in the sample"):
        validate_version(rv, "churn:1", sample, target="nope")
    relabelled = sample.assign(churned=sample["churned"].map({0: "stay", 1: "leave"}))
    with pytest.raises(InvalidInputError, match="labels the model does not know"):
        validate_version(rv, "churn:1", relabelled, target="churned")
    with pytest.raises(InvalidInputError, match="METRIC=VALUE"):
        Bound.parse("roc_auc>0.8", upper=False)
