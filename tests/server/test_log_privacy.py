"""Personal data in the prediction log (issue 18 item 7): only the model's columns and the
routing key are kept unless a deployment allows more; the files relevo writes are private to
the user; CSV exports cannot smuggle spreadsheet formulas."""

from __future__ import annotations

import asyncio
import stat
import time
from pathlib import Path

import httpx
import orjson
import pandas as pd
import pytest

from relevo.datasets import CHURN_FEATURES, make_churn
from relevo.serving.export import export_predictions
from relevo.serving.log import PredictionLog, open_prediction_log
from relevo.serving.records import frame_to_records
from relevo.serving.runtime import Runtime


def _rows(n: int, seed: int = 3) -> list[dict]:
    return frame_to_records(make_churn(n, seed=seed).drop(columns=["churned"]))


def _wait_logged(rv, n: int, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while (count := rv.store.predictions.count("churn")) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_fields_beside_the_features_are_neither_stored_nor_exported(live_server, rv, tmp_path):
    rows = _rows(6)
    for i, row in enumerate(rows):
        row["email"] = f"person{i}@example.com"
        row["ssn"] = f"078-05-112{i}"
    response = httpx.post(
        f"{live_server.url}/v1/deployments/churn/predict", json={"instances": rows}
    )
    assert response.status_code == 200
    assert _wait_logged(rv, 6) == 6
    stored = [r for chunk in rv.store.predictions.iter_rows("churn") for r in chunk]
    assert {tuple(sorted(orjson.loads(r["features"]))) for r in stored} == {
        tuple(sorted(CHURN_FEATURES))
    }
    assert sorted(r["routing_key"] for r in stored) == sorted(r["customer_id"] for r in rows)
    for name in ("out.csv", "out.parquet"):
        export_predictions(rv, "churn", tmp_path / name)
        frame = (pd.read_csv if name.endswith(".csv") else pd.read_parquet)(tmp_path / name)
        assert "email" not in frame.columns and "ssn" not in frame.columns
        assert len(frame) == 6
    text = (tmp_path / "out.csv").read_text()
    assert "example.com" not in text and "078-05" not in text


def test_a_deployment_may_allow_named_extra_fields(rv, deployed):
    plog = open_prediction_log(rv)
    assert plog is not None
    runtime = Runtime(rv, prediction_log=plog)
    runtime.refresh(strict=True)
    deployment = runtime.endpoint("churn").deployment
    # the allow list is the deployment's `log_extra` (set by `relevo deploy` once routing
    # stores it); set on the loaded state here
    object.__setattr__(deployment, "log_extra", ("channel",))
    rows = _rows(3)
    for row in rows:
        row.update(channel="web", email="someone@example.com")
    asyncio.run(runtime.predict("churn", rows))
    plog.close()
    stored = [r for chunk in rv.store.predictions.iter_rows("churn") for r in chunk]
    features = [orjson.loads(r["features"]) for r in stored]
    assert [f["channel"] for f in features] == ["web"] * 3
    assert not any("email" in f for f in features)


def test_files_relevo_creates_are_private(rv, deployed, live_server, tmp_path, database_url):
    home = live_server.settings.home
    response = httpx.post(
        f"{live_server.url}/v1/deployments/churn/predict", json={"instances": _rows(2)}
    )
    assert response.status_code == 200
    assert _wait_logged(rv, 2) == 2
    assert _mode(home) == 0o700
    spool = home / "spool"
    assert _mode(spool) == 0o700
    segments = list(spool.rglob("*.spool"))
    assert segments and {_mode(p) for p in segments} == {0o600}
    if database_url.startswith("sqlite"):
        database = Path(database_url.removeprefix("sqlite:///"))
        files = [p for p in database.parent.glob(database.name + "*") if p.is_file()]
        assert {p.name for p in files} >= {database.name, f"{database.name}-wal"}
        assert {_mode(p) for p in files} == {0o600}
    for name in ("private.csv", "private.parquet"):
        export_predictions(rv, "churn", tmp_path / name)
        assert _mode(tmp_path / name) == 0o600

    def refuse(rows: list[tuple]) -> int:
        raise ValueError("value too long")

    dead = home / "dead-letter" / "predictions.jsonl"
    log = PredictionLog(refuse, dead_letter=dead, flush_interval_s=0.01)
    from relevo.serving.log import LogEntry

    log.put_blocking(LogEntry("churn", "churn", 1, time.time(), ["a" * 32], {"x": [1]}, [{}], 1.0))
    log.close()
    assert _mode(dead.parent) == 0o700 and _mode(dead) == 0o600


def test_a_new_home_and_its_database_are_private(tmp_path):
    import relevo

    home = tmp_path / "fresh" / "home"
    with relevo.Relevo(home=home) as rv:
        rv.store.ping()
    assert _mode(home) == 0o700
    assert {_mode(p) for p in home.glob("relevo.db*") if p.is_file()} == {0o600}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_csv_exports_escape_formula_cells_and_keep_numbers(live_server, rv, tmp_path, suffix):
    rows = _rows(4)
    rows[0]["contract"] = '=HYPERLINK("http://evil.example","x")'
    rows[1]["region"] = "+cmd|' /C calc'!A0"
    rows[2]["payment_method"] = "-2+3"
    rows[3]["customer_id"] = "@SUM(1+1)"
    rows[3]["age"] = -5  # out of the reference's range, answered: a number stays a number
    response = httpx.post(
        f"{live_server.url}/v1/deployments/churn/predict", json={"instances": rows}
    )
    assert response.status_code == 200
    assert _wait_logged(rv, 4) == 4
    path = tmp_path / f"export{suffix}"
    export_predictions(rv, "churn", path)
    frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    by_key = frame.set_index("routing_key")
    quote = "'" if suffix == ".csv" else ""
    key3 = quote + "@SUM(1+1)"
    assert by_key.loc[rows[0]["customer_id"], "contract"] == quote + rows[0]["contract"]
    assert by_key.loc[rows[1]["customer_id"], "region"] == quote + rows[1]["region"]
    assert by_key.loc[rows[2]["customer_id"], "payment_method"] == quote + "-2+3"
    assert by_key.loc[key3, "age"] == -5
    assert pd.api.types.is_numeric_dtype(frame["age"].dtype)
    assert by_key.loc[rows[0]["customer_id"], "tenure_months"] == rows[0]["tenure_months"]
