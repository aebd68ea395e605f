"""`relevo drift DEPLOYMENT`: the table, --json, --html, and clear errors."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from relevo.datasets import make_churn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "monitoring" / "drift"))
from traffic import write_traffic

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


@pytest.fixture
def drifted(rv, churn_pipeline, churn_frame):
    version = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", version.ref)
    frame = make_churn(3000, seed=21, ageing=6, price_change=0.2)
    write_traffic(rv, version, churn_pipeline, frame, NOW - timedelta(minutes=30))
    return version


def test_the_table_names_the_drifted_features(cli, drifted) -> None:
    result = cli("drift", "churn", "--since", "2h")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "Drift of churn (churn:1)" in out
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("│")}
    assert "DRIFT" in lines["age"] and "DRIFT" in lines["monthly_charges"]
    assert "DRIFT" not in lines["region"] and "wasserstein" in lines["age"]
    assert "2 of 9 features drifted" in out and "no dataset drift" in out
    # a window across midnight names both days (a 24 h window read "01:03 to 01:03 UTC")
    day = " ".join(cli("drift", "churn", "--since", "24h").stdout.split())
    stamps = re.search(r"(\d{4}-\d\d-\d\d) \d\d:\d\d to (\d{4}-\d\d-\d\d) \d\d:\d\d UTC", day)
    assert stamps is not None, day
    assert stamps.group(1) < stamps.group(2)


def test_json_and_html(cli, drifted, tmp_path: Path) -> None:
    page = tmp_path / "drift.html"
    result = cli("drift", "churn", "--since", "2h", "--json", "--html", page)
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["drifted_features"] == ["age", "monthly_charges"]
    assert body["model"] == "churn:1" and body["dataset_drift"] is False
    assert [f["feature"] for f in body["features"]][:2] == ["age", "tenure_months"]
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "Drift of churn" in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_baselines_and_errors(cli, drifted) -> None:
    assert cli("drift", "churn", "--baseline", "previous").exit_code == 3  # no hour before
    unknown = cli("drift", "nope")
    assert unknown.exit_code == 3 and "nope" in unknown.stderr
    empty = cli("drift", "churn", "--since", "2h", "--until", "90m")
    assert empty.exit_code == 3 and "no prediction of deployment 'churn'" in empty.stderr
    bad = cli("drift", "churn", "--baseline", "yesterday")
    assert bad.exit_code == 2 and "--baseline" in bad.stderr
    since = cli("drift", "churn", "--since", "soon")
    assert since.exit_code == 2 and "invalid since 'soon'" in since.stderr
    assert "column" not in since.stderr  # an option, not a column of the data
    # a duration too long for a date: named as a bad option, not an unexpected error
    far = cli("drift", "churn", "--since", "200000w")
    assert far.exit_code == 2 and "invalid since '200000w'" in far.stderr, far.stderr
    assert "100 years" in far.stderr
    assert "Traceback" not in unknown.stderr + empty.stderr + bad.stderr + since.stderr


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (
            lambda d: d["inputs"].update(f=d["inputs"]["f"][:-4] + "!!!!"),
            "its inputs part: its block of statistics and samples cannot be read",
        ),
        (
            lambda d: d["prediction"].update(i=d["prediction"]["i"][:7]),
            "its prediction part: its block of counts cannot be read",
        ),
        (lambda d: d.pop("prediction"), "missing field 'prediction'"),
        (None, "not JSON"),
    ],
    ids=["bad-base64", "short-block", "missing-part", "not-json"],
)
def test_an_unreadable_stored_bucket_is_named_not_a_traceback(cli, rv, drifted, spoil, reason):
    """A bucket row spoilt in the store (by hand, a bad restore) stops the query with an error
    that names the bucket (deployment, start, model, role, replica) and its fault."""
    import orjson
    from sqlalchemy import select, update

    from relevo.store.tables import profile_buckets as pb

    with rv.store.engine.begin() as conn:
        start, replica, payload = conn.execute(
            select(pb.c.start, pb.c.replica, pb.c.payload).order_by(pb.c.start).limit(1)
        ).one()
        if spoil is None:
            spoilt = payload[: len(payload) // 2]
        else:
            d = orjson.loads(payload)
            spoil(d)
            spoilt = orjson.dumps(d).decode()
        conn.execute(
            update(pb).where(pb.c.start == start, pb.c.replica == replica).values(payload=spoilt)
        )
    result = cli("drift", "churn", "--since", "2h")
    assert result.exit_code == 5, result.stdout
    err = " ".join(result.stderr.split())  # Rich folds long lines
    assert "Traceback" not in result.stderr
    assert f"starting {start:%Y-%m-%d %H:%M:%S} UTC" in err
    assert "model churn:1, role champion" in err and f"replica '{replica}'" in err
    assert reason in err and "profile_buckets" in err
