"""`relevo feedback` and `relevo performance` as a user runs them: labels from CSV and Parquet
by id or by customer and time, refusals naming rows with nothing stored, the report as a
table, JSON and HTML, one-off thresholds failing the command, and export with the labels."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from relevo.datasets import CHURN_FEATURES, CHURN_ID, CHURN_TARGET, make_churn


def _deployed(cli, churn_files) -> None:
    """`churn:1` registered from the files and deployed as `churn`, keyed by customer."""
    for args in (
        ("models", "register", "churn", churn_files.model, "--reference", churn_files.reference,
         "--target", "churned"),
        ("deploy", "churn", "churn:1", "--key", CHURN_ID),
    ):  # fmt: skip
        result = cli(*args)
        assert result.exit_code == 0, result.output


def _scored(cli, churn_files, tmp_path, n=300):
    _deployed(cli, churn_files)
    frame = make_churn(n, seed=6)
    source = tmp_path / "customers.csv"
    frame[[CHURN_ID, *CHURN_FEATURES]].to_csv(source, index=False)
    scored = tmp_path / "scored.csv"
    result = cli("predict", "churn", "--input", source, "--output", scored)
    assert result.exit_code == 0, result.output
    out = pd.read_csv(scored)
    return frame, out


def test_feedback_by_id_then_performance(cli, churn_files, tmp_path):
    frame, scored = _scored(cli, churn_files, tmp_path)
    labels = pd.DataFrame({"prediction": scored["id"], "churned": frame[CHURN_TARGET]})
    path = tmp_path / "labels.parquet"
    labels.to_parquet(path)
    result = cli(
        "feedback", "churn", "--input", path, "--id-column", "prediction",
        "--label-column", "churned", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accepted"] == 300

    table = cli("performance", "churn", "--window", "1d")
    assert table.exit_code == 0, table.output
    assert "churn:1 (champion): 300 of 300 labelled" in table.stdout
    html = tmp_path / "report.html"
    report = cli("performance", "churn", "--json", "--html", html)
    assert report.exit_code == 0
    body = json.loads(report.stdout)
    assert body["models"][0]["overall"]["accuracy"]["count"] == 300
    assert "<svg" in html.read_text()

    # the worst segments: the significant ones, or why there is none
    found = cli("performance", "churn", "--segments", "--json")
    assert found.exit_code == 0, found.output
    segments = json.loads(found.stdout)["models"][0]["segments"]
    shown = cli("performance", "churn", "--segments").stdout
    lines = [line for line in shown.splitlines() if line.startswith("segment ")]
    significant = [" and ".join(s["conditions"]) for s in segments if s["significant"]]
    assert [line.split(": error")[0] for line in lines] == [f"segment {s}" for s in significant[:5]]
    if not significant:
        assert "no segment is significantly worse than the rest" in shown
        worse = [" and ".join(s["conditions"]) for s in segments if s["gap"] > 0]
        assert ("the nearest: " in shown) == bool(worse)
    # a binary classifier's segments are judged against the errors it expected there
    flat = " ".join(shown.split())
    assert all(s["expected_error"] is not None for s in segments)
    assert ("was expected (overall" in flat) == bool(lines or "the nearest: " in flat)

    failing = cli("performance", "churn", "--threshold", "accuracy=0.999")
    assert failing.exit_code == 1
    assert "BREACHED" in failing.stdout
    assert cli("performance", "churn", "--threshold", "accuracy").exit_code == 2
    assert cli("performance", "churn", "--threshold", "speed=1").exit_code == 2

    export = tmp_path / "log.csv"
    assert cli("export", "churn", "--output", export).exit_code == 0
    logged = pd.read_csv(export)
    assert logged["true_label"].notna().sum() == 300


def test_feedback_by_key_and_time_and_refusals(cli, churn_files, tmp_path):
    frame, scored = _scored(cli, churn_files, tmp_path, n=20)
    later = pd.Timestamp.now(tz="UTC")  # after the predictions, not after the upload
    keyed = pd.DataFrame(
        {"customer": frame[CHURN_ID], "when": later.isoformat(), "label": frame[CHURN_TARGET]}
    )
    path = tmp_path / "by_key.csv"
    keyed.to_csv(path, index=False)
    result = cli(
        "feedback", "churn", "--input", path, "--key-column", "customer",
        "--time-column", "when", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accepted"] == 20

    bad = pd.DataFrame({"id": scored["id"][:3], "label": [1, "churned", 0]})
    bad_path = tmp_path / "bad.csv"
    bad.to_csv(bad_path, index=False)
    refused = cli("feedback", "churn", "--input", bad_path)
    assert refused.exit_code == 2
    assert "row 1," in refused.stderr and "nothing stored" in refused.stderr
    assert "row 0," not in refused.stderr  # "1" read as text is still class 1
    missing = cli("feedback", "churn", "--input", bad_path, "--label-column", "truth")
    assert missing.exit_code == 2 and "truth" in missing.stderr
    unknown = pd.DataFrame({"id": ["nope"], "label": [1]})
    unknown_path = tmp_path / "unknown.csv"
    unknown.to_csv(unknown_path, index=False)
    told = cli("feedback", "churn", "--input", unknown_path)
    assert told.exit_code == 0 and "nope" in told.stdout


def test_too_few_labels_for_segments_says_so(cli, churn_files, tmp_path):
    frame, scored = _scored(cli, churn_files, tmp_path, n=150)
    labels = pd.DataFrame({"id": scored["id"], "label": frame[CHURN_TARGET]})
    path = tmp_path / "labels.csv"
    labels.to_csv(path, index=False)
    assert cli("feedback", "churn", "--input", path).exit_code == 0
    shown = cli("performance", "churn", "--segments")
    assert shown.exit_code == 0, shown.output
    assert (
        "no segment tested: a segment and the rest each need 100 labelled rows (150 labelled)"
        in (" ".join(shown.stdout.split()))
    )


def test_keyed_labels_known_at_their_time_in_the_users_columns(cli, churn_files, tmp_path, rv):
    """README's feedback step: labels by customer with the time their truth became known.
    That time is stored beside the upload's and the delay `relevo performance` shows ends
    there; a time after now is refused; every message names the file's own columns, once."""
    frame, scored = _scored(cli, churn_files, tmp_path, n=20)
    known = pd.Timestamp.now(tz="UTC")
    labels = pd.DataFrame(
        {"customer_id": frame[CHURN_ID], "churned": frame[CHURN_TARGET], "known_at": known}
    )
    path = tmp_path / "labels.csv"
    args = ("feedback", "churn", "--input", path, "--key-column", "customer_id",
            "--time-column", "known_at", "--label-column", "churned")  # fmt: skip

    future = labels.assign(known_at=(known + pd.Timedelta(days=7)).isoformat())
    future.loc[3, "known_at"] = "soon"
    future.to_csv(path, index=False)
    refused = cli(*args)
    assert refused.exit_code == 2
    assert refused.stderr.count("column 'known_at'") == 10  # the first ten of 20 problems
    assert "row 0, column 'known_at': " in refused.stderr and " is after now (" in refused.stderr
    assert "row 3, column 'known_at': expected a time, got 'soon'" in refused.stderr
    assert "'time'" not in refused.stderr and rv.store.labels.count("churn") == 0

    wrong = labels.astype({"churned": object})
    wrong.loc[2, "churned"] = "yes"
    wrong.to_csv(path, index=False)
    refused = cli(*args)
    assert refused.exit_code == 2
    assert "row 2, column 'churned': expected one of the model's classes (0, 1), got 'yes'" in (
        " ".join(refused.stderr.split())
    )
    missing = cli(*args[:-2])  # no --label-column: the default, 'label', is not in the file
    assert missing.exit_code == 2
    said = " ".join(missing.stderr.split())
    assert "has no column 'label' (--label-column); its columns are customer_id, churned," in said
    assert said.count("'label'") == 1

    labels.to_csv(path, index=False)
    stored = cli(*args)
    assert stored.exit_code == 0, stored.output
    assert "Stored 20 labels for churn" in stored.stdout
    row = rv.store.labels.get(scored["id"].iloc[0])
    assert row is not None
    assert row["known_at"] == known.to_pydatetime() < row["received_at"]
    report = cli("performance", "churn", "--json")
    assert report.exit_code == 0, report.output
    (window,) = json.loads(report.stdout)["models"][0]["windows"]
    hours = [
        (r["known_at"] - r["predicted_at"]).total_seconds() / 3600
        for r in map(rv.store.labels.get, scored["id"])
    ]
    assert window["label_delay_hours"] == pytest.approx(float(np.median(hours)), abs=1e-9)


def test_keyed_labels_written_as_floats_join_the_customers_scored(cli, churn_files, tmp_path, rv):
    """A label file whose integer key column pandas wrote as floats (`10017.0`: a column with a
    gap is kept so) joins the customers logged as 10017: a float-looking key is the integer."""
    _deployed(cli, churn_files)
    frame = make_churn(20, seed=6)
    frame[CHURN_ID] = range(10_000, 10_020)
    source = tmp_path / "customers.csv"
    frame[[CHURN_ID, *CHURN_FEATURES]].to_csv(source, index=False)
    assert cli("predict", "churn", "--input", source, "--output", tmp_path / "s.csv").exit_code == 0
    scored = pd.read_csv(tmp_path / "s.csv")
    keys = frame[CHURN_ID].astype(float)  # as pandas keeps an integer column with a gap
    labels = pd.DataFrame(
        {
            "customer_id": keys,
            "churned": frame[CHURN_TARGET],
            "known_at": pd.Timestamp.now(tz="UTC"),
        }
    )
    path = tmp_path / "labels.csv"
    labels.to_csv(path, index=False)
    assert path.read_text().splitlines()[1].startswith("10000.0,")
    stored = cli(
        "feedback", "churn", "--input", path, "--key-column", "customer_id",
        "--time-column", "known_at", "--label-column", "churned",
    )  # fmt: skip
    assert rv.store.labels.count("churn") == 20, stored.output
    assert rv.store.labels.get(scored["id"].iloc[0]) is not None


@pytest.mark.parametrize("days", ["-1", "0", "nan"])
def test_within_days_must_be_a_positive_number(cli, churn_files, tmp_path, days):
    """-1 stored nothing ("1 unknown", exit 0), 0 used the 30-day default (exit 0), nan was an
    unexpected ValueError (exit 1)."""
    _deployed(cli, churn_files)
    path = tmp_path / "labels.csv"
    pd.DataFrame({"customer": ["C1"], "when": ["2026-11-02"], "label": [1]}).to_csv(
        path, index=False
    )
    result = cli(
        "feedback", "churn", "--input", path, "--key-column", "customer",
        "--time-column", "when", "--within-days", days,
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "--within-days" in result.stderr


@pytest.mark.parametrize(
    ("option", "value"), [("--window", "99999999999999w"), ("--since", "200000w")]
)
def test_performance_over_more_than_a_century_is_refused_naming_the_option(
    cli, churn_files, option, value
):
    _deployed(cli, churn_files)
    result = cli("performance", "churn", option, value)
    assert result.exit_code == 2, result.output  # was 1: "unexpected OverflowError"
    assert f"invalid {option.removeprefix('--')} '{value}'" in result.output
    assert "at most 100 years" in result.output


def test_a_label_keyed_by_a_key_with_a_nul_is_unknown_on_every_store(cli, churn_files, tmp_path):
    # PostgreSQL cannot compare a NUL: the whole upload failed there ("unexpected DataError")
    frame, _ = _scored(cli, churn_files, tmp_path, n=3)
    later = pd.Timestamp.now(tz="UTC").isoformat()
    customers = [*frame[CHURN_ID][:2], "C\x00zero"]
    keyed = pd.DataFrame({"customer": customers, "when": later, "label": [1, 0, 1]})
    path = tmp_path / "by_key.parquet"
    keyed.to_parquet(path)
    result = cli(
        "feedback", "churn", "--input", path, "--key-column", "customer",
        "--time-column", "when", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout)
    assert (done["accepted"], done["unknown"]) == (2, 1)
    assert done["unknown_ids"] == [f"C\x00zero@{pd.Timestamp(later).isoformat()}"]
