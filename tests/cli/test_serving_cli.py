"""`relevo deploy`, `status`, `predict` (batch scoring) and `export` as a user runs them."""

from __future__ import annotations

import errno
import json
import os
import socket
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

import relevo
from relevo.datasets import CHURN_FEATURES, make_churn
from relevo.server.background import BackgroundServer
from relevo.serving import spool
from relevo.settings import Settings


def _setup(cli, churn_files) -> None:
    result = cli(
        "models",
        "register",
        "churn",
        churn_files.model,
        "--reference",
        churn_files.reference,
        "--target",
        "churned",
    )
    assert result.exit_code == 0, result.output
    result = cli("deploy", "churn", "churn:1", "--key", "customer_id")
    assert result.exit_code == 0, result.output
    assert "churn:1" in result.stdout


def test_deploy_and_status(cli, churn_files):
    _setup(cli, churn_files)
    result = cli("status", "churn", "--json")
    assert result.exit_code == 0
    state = json.loads(result.stdout)
    assert state["model"] == "churn:1"
    assert state["key_column"] == "customer_id"
    assert state["strategy"] == "basic"
    assert state["predictions_logged"] == 0
    table = cli("status", "churn")
    assert "churn:1" in table.stdout and "customer_id" in table.stdout


def test_deploy_errors(cli, churn_files):
    _setup(cli, churn_files)
    missing = cli("deploy", "churn", "churn:9")
    assert missing.exit_code == 3
    assert "churn:9" in missing.stderr
    feature_key = cli("deploy", "churn", "churn:1", "--key", "age")
    assert feature_key.exit_code == 2
    assert "routing key 'age'" in feature_key.stderr
    unknown = cli("status", "nope")
    assert unknown.exit_code == 3
    assert "nope" in unknown.stderr
    assert "Traceback" not in missing.output + feature_key.output + unknown.output


def test_batch_predict_scores_logs_and_exports(cli, churn_files, churn_pipeline, tmp_path):
    _setup(cli, churn_files)
    frame = make_churn(250, seed=21, id_start=10_000)
    source = tmp_path / "customers.csv"
    frame.to_csv(source, index=False)
    scored_path = tmp_path / "scored.parquet"
    result = cli("predict", "churn", "--input", source, "--output", scored_path)
    assert result.exit_code == 0, result.output
    assert "250" in result.stdout
    scored = pd.read_parquet(scored_path)
    expected = churn_pipeline.predict_proba(frame[CHURN_FEATURES])[:, 1]
    np.testing.assert_allclose(scored["probability"], expected, rtol=1e-12)
    assert (scored["model"] == "churn:1").all()
    assert scored["customer_id"].tolist() == frame["customer_id"].tolist()

    status = json.loads(cli("status", "churn", "--json").stdout)
    assert status["predictions_logged"] == 250

    export = tmp_path / "log.csv"
    result = cli("export", "churn", "--output", export)
    assert result.exit_code == 0, result.output
    logged = pd.read_csv(export)
    assert len(logged) == 250
    assert set(logged["id"]) == set(scored["id"])
    assert {"id", "model", "created_at", "routing_key", "probability", "label", "age"} <= set(
        logged.columns
    )
    merged = logged.merge(scored[["id", "probability"]], on="id", suffixes=("", "_scored"))
    np.testing.assert_allclose(merged["probability"], merged["probability_scored"], rtol=1e-12)
    assert sorted(logged["routing_key"]) == sorted(frame["customer_id"])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_says_which_rows_batch_scoring_made_and_which_requests(
    cli, churn_files, relevo_home, database_url, tmp_path, suffix
):
    """Without a `source` column, the batch run's rows and the served ones looked the same."""
    _setup(cli, churn_files)
    batch = make_churn(40, seed=5, id_start=20_000)
    batch.to_csv(tmp_path / "customers.csv", index=False)
    scored_path = tmp_path / "scored.parquet"
    result = cli("predict", "churn", "--input", tmp_path / "customers.csv", "--output", scored_path)
    assert result.exit_code == 0, result.output
    settings = Settings(home=relevo_home, database_url=database_url, log_flush_interval_s=0.05)
    server = BackgroundServer(settings)
    try:
        with relevo.Client(server.start()) as client:
            served = client.predict(
                "churn", make_churn(15, seed=6, id_start=30_000).drop(columns="churned")
            )
    finally:
        server.stop()  # the log is flushed

    export = tmp_path / f"log{suffix}"
    result = cli("export", "churn", "--output", export)
    assert result.exit_code == 0, result.output
    logged = pd.read_csv(export) if suffix == ".csv" else pd.read_parquet(export)
    source = dict(zip(logged["id"], logged["source"], strict=True))
    assert {source[i] for i in pd.read_parquet(scored_path)["id"]} == {"batch"}
    assert {source[i] for i in served["id"]} == {"request"}
    assert len(logged) == 40 + 15
    assert logged["source"].value_counts().to_dict() == {"batch": 40, "request": 15}


def test_logged_fields_named_like_the_exports_columns_keep_both(
    cli, churn_files, rv, relevo_home, database_url, tmp_path
):
    """Request fields the log keeps (`log_extra`) named `source`, `model` or `true_label`
    made a second column of that name: the CSV export failed with "'DataFrame' object has no
    attribute 'dtype'", the Parquet one with "Duplicate column names found", and a labelled
    log's `true_label` wrote over the field's values."""
    _setup(cli, churn_files)
    rv.deployments.deploy("churn", "churn:1", log_extra=["source", "model", "true_label"])
    customers = make_churn(4, seed=7, id_start=40_000).drop(columns="churned")
    sent = customers.assign(source="web", model="x", true_label="unknown")
    settings = Settings(home=relevo_home, database_url=database_url, log_flush_interval_s=0.05)
    server = BackgroundServer(settings)
    try:
        with relevo.Client(server.start()) as client:
            served = client.predict("churn", sent)
    finally:
        server.stop()
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"id": served["id"], "label": [1, 0, 1, 0]}).to_csv(labels, index=False)
    assert cli("feedback", "churn", "--input", labels).exit_code == 0

    for suffix in (".csv", ".parquet"):
        export = tmp_path / f"log{suffix}"
        result = cli("export", "churn", "--output", export)
        assert result.exit_code == 0, result.output
        logged = pd.read_csv(export) if suffix == ".csv" else pd.read_parquet(export)
        assert logged.columns.is_unique
        assert logged["source"].tolist() == ["request"] * 4
        assert logged["model"].tolist() == ["churn:1"] * 4
        assert logged["true_label"].astype(int).tolist() == [1, 0, 1, 0]
        assert logged["feature_source"].tolist() == ["web"] * 4
        assert logged["feature_model"].tolist() == ["x"] * 4
        assert logged["feature_true_label"].tolist() == ["unknown"] * 4
        assert logged["id"].tolist() == served["id"].tolist()


def test_batch_predict_rejects_a_bad_file_whole(cli, churn_files, tmp_path):
    _setup(cli, churn_files)
    frame = make_churn(1500, seed=3)
    frame["age"] = frame["age"].astype(object)
    frame.loc[1200, "age"] = "old"
    frame = frame.drop(columns=["region"])
    source = tmp_path / "bad.csv"
    frame.to_csv(source, index=False)
    result = cli("predict", "churn", "--input", source)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ")  # no progress bar's leftovers before it
    assert "nothing was scored" in result.stderr
    assert "row 1200" in result.stderr and "'age'" in result.stderr
    assert "'region'" in result.stderr
    status = json.loads(cli("status", "churn", "--json").stdout)
    assert status["predictions_logged"] == 0


def test_batch_predict_file_errors(cli, churn_files, tmp_path):
    _setup(cli, churn_files)
    missing = cli("predict", "churn", "--input", tmp_path / "nope.csv")
    assert missing.exit_code == 2 and "nope.csv" in missing.stderr
    odd = tmp_path / "rows.xlsx"
    odd.write_text("x")
    unknown = cli("predict", "churn", "--input", odd)
    assert unknown.exit_code == 2 and "unknown file type" in unknown.stderr


def test_export_errors(cli, churn_files, tmp_path):
    _setup(cli, churn_files)
    wrong = cli("export", "churn", "--output", tmp_path / "log.xlsx")
    assert wrong.exit_code == 2 and ".csv or .parquet" in wrong.stderr
    unknown = cli("export", "nope", "--output", tmp_path / "log.csv")
    assert unknown.exit_code == 3
    empty = cli("export", "churn", "--output", tmp_path / "empty.csv")
    assert empty.exit_code == 0
    assert "Exported 0 predictions" in empty.stdout


def test_redeploy_keeps_the_routing_key_unless_told(cli, churn_files):
    _setup(cli, churn_files)
    assert cli("deploy", "churn", "churn:1").exit_code == 0
    assert json.loads(cli("status", "churn", "--json").stdout)["key_column"] == "customer_id"
    assert cli("deploy", "churn", "churn:1", "--no-key").exit_code == 0
    assert json.loads(cli("status", "churn", "--json").stdout)["key_column"] is None
    both = cli("deploy", "churn", "churn:1", "--key", "customer_id", "--no-key")
    assert both.exit_code == 2 and "exclude" in both.stderr


def test_batch_predict_with_a_changed_artifact_exits_5(cli, churn_files, tmp_path, rv):
    _setup(cli, churn_files)
    version = rv.registry.get("churn:1")
    with rv.registry.artifacts.path(version.artifact_path).open("ab") as fh:
        fh.write(b"\0")
    source = tmp_path / "few.csv"
    make_churn(5, seed=2).to_csv(source, index=False)
    result = cli("predict", "churn", "--input", source)
    assert result.exit_code == 5
    assert "changed since it was registered" in result.stderr


def test_an_explicit_sqlite_url_in_a_missing_folder_is_an_error(tmp_path):
    from typer.testing import CliRunner

    from relevo.cli.main import app

    url = f"sqlite:///{tmp_path}/nope/relevo.db"
    result = CliRunner().invoke(app, ["--database-url", url, "models", "list"])
    assert result.exit_code == 6
    assert "does not exist" in result.stderr
    assert not (tmp_path / "nope").exists()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # a missing colon: the whole URL, password and all, was printed
        ("postgresql//relevo:s3cretpw@db.internal/relevo", "'postgresql//***@db.internal/relevo'"),
        # a port that is not a number: "unexpected ValueError: invalid literal for int()", exit 1
        (
            "postgresql://relevo:s3cretpw@db.internal:port/x",
            "'postgresql://***@db.internal:port/x'",
        ),
    ],
)
def test_a_database_url_that_does_not_parse_is_named_without_its_password(
    tmp_path, monkeypatch, url, shown
):
    from typer.testing import CliRunner

    from relevo.cli.main import app

    monkeypatch.setenv("RELEVO_DATABASE_URL", url)
    result = CliRunner().invoke(app, ["--home", str(tmp_path / "home"), "models", "list"])
    assert result.exit_code == 6, result.output
    assert " ".join(result.stderr.split()) == (
        f"Error: not a valid database URL (RELEVO_DATABASE_URL, --database-url): {shown}; expected "
        "sqlite:///path or postgresql://user:password@host:port/database"
    )
    assert "s3cretpw" not in result.output and "Traceback" not in result.output


def test_deployments_lists_every_deployment(cli, churn_files, tmp_path):
    empty = cli("deployments")
    assert empty.exit_code == 0
    assert "No deployment yet" in empty.stdout and "relevo deploy" in empty.stdout
    assert json.loads(cli("deployments", "--json").stdout) == []

    _setup(cli, churn_files)
    assert cli("deploy", "churn-eu", "churn:1").exit_code == 0
    source = tmp_path / "few.csv"
    make_churn(7, seed=5).to_csv(source, index=False)
    assert cli("predict", "churn", "--input", source).exit_code == 0

    listed = json.loads(cli("deployments", "--json").stdout)
    by_name = {d["name"]: d for d in listed}
    assert set(by_name) == {"churn", "churn-eu"}
    assert by_name["churn"]["model"] == by_name["churn-eu"]["model"] == "churn:1"
    assert by_name["churn"]["key_column"] == "customer_id"
    assert by_name["churn-eu"]["key_column"] is None
    assert by_name["churn"]["predictions_logged"] == 7
    assert by_name["churn-eu"]["predictions_logged"] == 0
    # each entry is what `status NAME --json` says of that deployment
    for name, entry in by_name.items():
        assert json.loads(cli("status", name, "--json").stdout) == entry

    shown = cli("deployments")
    assert shown.exit_code == 0
    rows = {line.split("│")[1].strip(): line for line in shown.stdout.splitlines() if "│" in line}
    assert "customer_id" in rows["churn"] and "churn:1" in rows["churn"]
    assert rows["churn"].split("│")[-2].strip() == "7"
    assert "customer_id" not in rows["churn-eu"]
    assert rows["churn-eu"].split("│")[-2].strip() == "0"


def test_status_without_a_name_shows_all(cli, churn_files):
    _setup(cli, churn_files)
    assert cli("deploy", "churn-eu", "churn:1").exit_code == 0
    assert cli("status").stdout == cli("deployments").stdout
    assert cli("status", "--json").stdout == cli("deployments", "--json").stdout
    names = {d["name"] for d in json.loads(cli("status", "--json").stdout)}
    assert names == {"churn", "churn-eu"}


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another socket listens on: `serve` past its checks stops there."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def _disk_full(*args: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("problem", ["no space left", "a file in the way"])
def test_serve_says_which_folder_when_the_spool_cannot_be_written(
    cli, relevo_home, taken_port, monkeypatch, problem
):
    # before: each server process failed its start-up with a traceback from the lifespan
    if problem == "no space left":
        if not spool.MAPPED:
            pytest.skip("segments are preallocated only where posix_fallocate is")
        monkeypatch.setattr(os, "posix_fallocate", _disk_full)
    else:
        relevo_home.mkdir(parents=True, exist_ok=True)
        (relevo_home / "spool").write_text("not a folder")
    result = cli("serve", "--port", str(taken_port))
    assert result.exit_code == 6, result.output
    message = " ".join(result.stderr.split())
    assert f"cannot spool answered rows to {relevo_home / 'spool'}" in message
    assert "set RELEVO_HOME to one" in message
    assert "relevo serving on" not in result.stdout
    assert "Traceback" not in result.output
