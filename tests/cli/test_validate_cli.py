"""`relevo validate` from the command line: a report, a documented exit code, JSON for CI."""

from __future__ import annotations

import json

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from typer.testing import CliRunner

from relevo.datasets import CHURN_FEATURES, CHURN_TARGET, make_churn


@pytest.fixture
def sample(tmp_path):
    path = tmp_path / "sample.parquet"
    make_churn(600, seed=31).to_parquet(path)
    return path


@pytest.fixture
def registered(cli, churn_files, churn_frame, tmp_path):
    dummy = DummyClassifier().fit(churn_frame[CHURN_FEATURES], churn_frame[CHURN_TARGET])
    joblib.dump(dummy, tmp_path / "dummy.joblib")
    for name, path in (("churn", churn_files.model), ("churn-dummy", tmp_path / "dummy.joblib")):
        done = cli("models", "register", name, path, "--reference", churn_files.reference,
                   "--target", "churned")  # fmt: skip
        assert done.exit_code == 0, done.output


def test_a_good_model_passes_with_exit_code_0(cli, registered, sample):
    result = cli("validate", "churn:1", "--data", sample, "--min", "roc_auc=0.75",
                 "--max", "log_loss=0.6", "--max-latency-ms", "10000")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Validation of churn:1 on 600 rows: PASSED" in result.stdout
    assert "FAIL" not in result.stdout


def test_a_dummy_model_fails_with_exit_code_8_and_says_why(cli, registered, sample):
    result = cli("validate", "churn-dummy:1", "--data", sample, "--min", "roc_auc=0.75",
                 "--against", "churn:1", "--json")  # fmt: skip
    assert result.exit_code == 8, result.output
    report = json.loads(result.stdout)
    assert report["passed"] is False
    failed = {c["name"]: c for c in report["checks"] if not c["passed"]}
    assert set(failed) == {"roc_auc", "roc_auc vs churn:1"}
    assert failed["roc_auc"]["value"] == 0.5 and failed["roc_auc"]["limit"] == ">= 0.75"
    assert report["against_metrics"]["roc_auc"] > 0.75


def test_the_human_report_fits_80_columns(cli, registered, sample, relevo_home, database_url):
    from relevo.cli.main import app

    argv = ["--home", str(relevo_home), "--database-url", database_url, "validate",
            "churn-dummy:1", "--data", str(sample), "--min", "roc_auc=0.75", "--max",
            "log_loss=0.3", "--against", "churn:1", "--max-latency-ms", "0"]  # fmt: skip
    result = CliRunner().invoke(app, argv, env={"COLUMNS": "80", "LINES": "50"})
    assert result.exit_code == 8, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "FAILED" in lines[0]
    for check in ("roc_auc", "log_loss", "roc_auc vs churn:1", "latency p99, 1 row"):
        assert any(line.startswith(f"│ {check} ") and "FAIL" in line for line in lines), check


def test_a_sample_missing_a_column_fails_naming_it(cli, registered, churn_frame, tmp_path):
    path = tmp_path / "no_tenure.csv"
    churn_frame.drop(columns="tenure_months").head(50).to_csv(path, index=False)
    result = cli("validate", "churn:1", "--data", path)
    assert result.exit_code == 8, result.output
    assert "signature" in result.stdout and "FAIL" in result.stdout
    assert "'tenure_months': required column is missing" in result.stdout


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_an_infinite_cell_fails_the_signature_check_naming_it(cli, registered, tmp_path, suffix):
    """Not "unexpected ValueError: Input X contains infinity" from inside the model."""
    frame = make_churn(300, seed=12)
    frame.loc[4, "monthly_charges"] = np.inf
    path = tmp_path / f"inf{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    result = cli("validate", "churn:1", "--data", path, "--min", "roc_auc=0.7")
    assert result.exit_code == 8, result.output
    assert "row 4, column 'monthly_charges': not a finite number" in result.stdout
    assert "unexpected" not in result.output


def test_a_csv_is_read_as_relevo_predict_reads_it(cli, rv, tmp_path):
    """Codes in a string column ("01", "02", "10") stay text, as `relevo predict` keeps them:
    the metrics are scikit-learn's on the file, and the latency step takes the rows."""
    rng = np.random.default_rng(0)

    def make(n: int) -> pd.DataFrame:
        plan = rng.choice(["01", "02", "10"], n)
        x = rng.normal(size=n)
        y = ((plan == "01") * 2 - 1 + 0.3 * x + 0.5 * rng.normal(size=n) > 0).astype(int)
        return pd.DataFrame({"plan": plan, "x": x, "churned": y})

    train, sample = make(1000), make(500)
    encode = ColumnTransformer([("c", OneHotEncoder(handle_unknown="ignore"), ["plan"])],
                               remainder="passthrough")  # fmt: skip
    model = make_pipeline(encode, LogisticRegression()).fit(train[["plan", "x"]], train["churned"])
    rv.registry.register("plan", model, train, target="churned")
    path = tmp_path / "sample.csv"
    sample.to_csv(path, index=False)
    result = cli("validate", "plan:1", "--data", path, "--min", "roc_auc=0.5",
                 "--max-latency-ms", "10000", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    expected = roc_auc_score(sample["churned"], model.predict_proba(sample[["plan", "x"]])[:, 1])
    assert json.loads(result.stdout)["metrics"]["roc_auc"] == pytest.approx(expected, abs=1e-12)


def test_the_report_counts_every_bad_cell(cli, registered, tmp_path):
    frame = make_churn(1000, seed=12)
    frame["age"] = "x"
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    result = cli("validate", "churn:1", "--data", path, "--json")
    assert result.exit_code == 8, result.output
    report = json.loads(result.stdout)
    assert report["problem_count"] == 1000 and report["checks"][0]["value"] == 1000
    human = cli("validate", "churn:1", "--data", path)
    assert "1,000 problem(s) in all; the first:" in human.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--min", "auc=0.7"], "'auc': unknown metric; use one of accuracy, roc_auc"),
        (["--min", "roc_auc"], "write METRIC=VALUE"),
        (["--target", "gone"], "target column 'gone' is not in the sample"),
        (["--against", "nope:1"], "model nope:1 not found"),
    ],
)
def test_what_cannot_be_checked_exits_with_its_error_code(cli, registered, sample, args, message):
    result = cli("validate", "churn:1", "--data", sample, *args)
    assert result.exit_code in (2, 3), result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_metric_limits_on_a_sample_without_the_registered_target_name_file_and_column(
    cli, registered, tmp_path
):
    """README's `relevo validate churn:2 --data customers.csv --min roc_auc=0.75`: the version
    knows its target (churned); what is wrong is that the file has no such column."""
    path = tmp_path / "customers.csv"
    make_churn(50, seed=32).drop(columns=CHURN_TARGET).to_csv(path, index=False)
    result = cli("validate", "churn:1", "--data", path, "--min", "roc_auc=0.75")
    assert result.exit_code == 2, result.output
    said = " ".join(result.stderr.split())
    assert f"the sample {path} has no column 'churned', the target churn:1 was registered with" in (
        said
    )
    assert "(the sample's columns: customer_id, age, tenure_months," in said
    assert "add it, or name the column that holds the labels with --target COLUMN" in said
    # without a limit or --against, no labels are needed: the rest is checked
    assert cli("validate", "churn:1", "--data", path).exit_code == 0
