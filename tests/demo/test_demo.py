"""`relevo demo` end to end through the CLI: what it reports is checked against what happened
(the store, the exported file), twice in the same home, and in its human form."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner, Result

import relevo
from relevo.cli.main import app
from relevo.cli.state import state
from relevo.demo import CHAPTERS, new_home

CUSTOMERS = 300
CLI_ENV = {"COLUMNS": "100", "LINES": "50"}


def run_cli(*args: str | Path) -> Result:
    try:
        return CliRunner().invoke(app, [str(a) for a in args], env=CLI_ENV)
    finally:
        if state._relevo is not None:
            state._relevo.close()
            state._relevo = None


def demo_json(home: Path) -> tuple[dict[str, Any], set[threading.Thread]]:
    """Run the demo with --json; its summary and the threads it left behind."""
    before = set(threading.enumerate())
    result = run_cli("demo", "--customers", CUSTOMERS, "--json", "--home", home)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # nothing but the summary on stdout
    deadline = time.monotonic() + 5
    while (left := set(threading.enumerate()) - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    return summary, left


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two runs of `relevo demo --json` in the same home."""
    home = tmp_path_factory.mktemp("demo") / "home"
    first, first_left = demo_json(home)
    exported_first = pd.read_parquet(first["export_path"])
    second, second_left = demo_json(home)
    return {
        "home": home,
        "first": first,
        "second": second,
        "exported_first": exported_first,
        "threads_left": first_left | second_left,
    }


def test_summary_reports_every_field(runs: dict[str, Any]) -> None:
    first = runs["first"]
    expected = {
        "home", "model", "auc", "requests_sent", "requests_failed", "rows_predicted",
        "rows_logged", "rows_exported", "export_path", "p50_ms", "p99_ms", "seconds",
        "total_seconds",
    }  # fmt: skip
    assert expected <= first.keys()
    assert Path(first["home"]) == runs["home"].resolve()
    assert first["model"] == "churn:1"
    assert set(first["seconds"]) == {c.key for c in CHAPTERS}
    assert first["total_seconds"] >= sum(first["seconds"].values()) - 0.1
    assert 0 < first["p50_ms"] <= first["p99_ms"]


def test_the_model_is_good_and_tested_before_production(runs: dict[str, Any]) -> None:
    assert runs["first"]["auc"] > 0.75
    assert runs["first"]["sample_max_difference"] < 1e-9


def test_every_request_but_the_planted_one_is_answered(runs: dict[str, Any]) -> None:
    first = runs["first"]
    assert first["rows_sent"] == CUSTOMERS
    assert first["requests_failed"] == 1
    assert first["rows_answered"] == first["rows_predicted"] == CUSTOMERS
    # the server counted what the callers sent, the refused one included
    assert first["server_requests"] == first["requests_sent"]
    assert first["server_errors"] == 1
    planted = first["planted_error"]
    assert planted["status"] == 422
    assert {(p["column"], p["row"]) for p in planted["problems"]} == {
        ("age", 0),
        ("tenure_months", 0),
    }


def test_what_is_reported_is_what_the_store_holds(runs: dict[str, Any]) -> None:
    first, second = runs["first"], runs["second"]
    assert first["rows_logged"] == first["log_rows_total"] == CUSTOMERS
    assert second["rows_logged"] == CUSTOMERS
    with relevo.Relevo(home=runs["home"]) as rv:
        assert rv.store.predictions.count("churn") == 2 * CUSTOMERS
        assert [v.ref for v in rv.registry.list("churn")] == ["churn:1", "churn:2"]
        assert rv.deployments.get("churn").model_ref == "churn:2"


def test_the_export_is_the_log(runs: dict[str, Any]) -> None:
    exported = runs["exported_first"]
    assert len(exported) == runs["first"]["rows_exported"] == CUSTOMERS
    assert exported["id"].is_unique
    assert set(exported["model"]) == {"churn:1"}
    assert exported["routing_key"].str.match(r"^C\d{7}$").all()
    assert exported["probability"].between(0, 1).all()
    assert Path(runs["first"]["export_path"]).parent == runs["home"].resolve()


def test_a_second_run_in_the_same_home_registers_version_2(runs: dict[str, Any]) -> None:
    second = runs["second"]
    assert second["model"] == "churn:2"
    assert second["requests_failed"] == 1
    exported = pd.read_parquet(second["export_path"])
    assert len(exported) == second["rows_exported"] == 2 * CUSTOMERS
    assert (exported["model"] == "churn:2").sum() == CUSTOMERS


def test_no_thread_is_left_behind(runs: dict[str, Any]) -> None:
    assert not runs["threads_left"], [t.name for t in runs["threads_left"]]


def test_human_output_tells_every_chapter(tmp_path: Path) -> None:
    # the root --home is the base: each run gets a fresh folder under <base>/demo/
    result = run_cli("--home", tmp_path, "demo", "--customers", 40)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for number, chapter in enumerate(CHAPTERS, 1):
        assert f"{number}/{len(CHAPTERS)}  {chapter.title}" in out
    assert "HTTP 422" in out
    assert "churn:1" in out
    (run_home,) = (tmp_path / "demo").iterdir()
    assert (run_home / "relevo.db").is_file()
    assert f"relevo --home {run_home} models show churn:1" in out


def test_each_run_gets_a_new_home(tmp_path: Path) -> None:
    homes = {new_home(tmp_path) for _ in range(20)}
    assert len(homes) == 20
    assert all(h.parent == tmp_path / "demo" for h in homes)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_keeps_the_server_up_until_stopped(tmp_path: Path, stop: signal.Signals) -> None:
    command = [sys.executable, "-c", "from relevo.cli.main import main; main()"]
    args = ["demo", "--customers", "40", "--serve", "--json", "--home", str(tmp_path)]
    proc = subprocess.Popen(
        command + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        lines = []
        while not lines or lines[-1] != "}\n":  # the JSON summary ends with a lone brace
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else "no output"
            lines.append(line)
        url = json.loads("".join(lines))["server_url"]
        assert httpx.get(f"{url}/v2/models/churn", timeout=10).status_code == 200
        proc.send_signal(stop)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out == ""  # --json: the summary alone on stdout, the URLs on stderr
    assert f"{url}/docs" in err and f"{url}/metrics" in err
    assert "Server stopped" in err
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/healthz", timeout=2)


def test_a_home_with_other_models_is_refused(tmp_path: Path, churn_pipeline, churn_frame) -> None:
    with relevo.Relevo(home=tmp_path) as rv:
        rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    result = run_cli("demo", "--customers", 20, "--home", tmp_path)
    assert result.exit_code == 4
    assert "churn:1" in result.stderr and "home of its own" in result.stderr
    assert result.stdout == ""
    with relevo.Relevo(home=tmp_path) as rv:
        assert [v.ref for v in rv.registry.list()] == ["churn:1"]
        assert rv.deployments.list() == []
