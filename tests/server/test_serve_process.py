"""`relevo serve` as a real process: graceful SIGTERM keeps every answered row; several workers
report one set of metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from relevo.datasets import make_churn
from relevo.serving.records import frame_to_records

pytestmark = pytest.mark.slow


def _start(relevo_home: Path, database_url: str, port: int, workers: int = 1) -> subprocess.Popen:
    env = {
        **os.environ,
        "RELEVO_HOME": str(relevo_home),
        "RELEVO_DATABASE_URL": database_url,
        "RELEVO_LOG_FLUSH_INTERVAL_S": "5",  # rows stay queued: only the graceful stop saves them
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "relevo", "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
            if ready.status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read().decode() if proc.stdout else "server died")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("relevo serve did not become ready")


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> str:
    os.killpg(proc.pid, sig)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return out.decode()


def _send(port: int, rows: list[dict], per_request: int) -> int:
    url = f"http://127.0.0.1:{port}/v1/deployments/churn/predict"
    chunks = [rows[i : i + per_request] for i in range(0, len(rows), per_request)]
    with httpx.Client() as client, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda c: client.post(url, json={"instances": c}), chunks))
    assert all(a.status_code == 200 for a in answers)
    return sum(len(a.json()["predictions"]) for a in answers)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_graceful_stop_keeps_every_answered_row(
    deployed, relevo_home, database_url, cli, sig, tmp_path, free_port
):
    port = free_port()
    proc = _start(relevo_home, database_url, port)
    try:
        rows = frame_to_records(make_churn(600, seed=4).drop(columns=["churned"]))
        answered = _send(port, rows, per_request=3) + _send(port, rows[:50], per_request=1)
    finally:
        output = _stop(proc, sig)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status reports it
    assert proc.returncode in (0, -sig), output
    assert "Application shutdown complete" in output
    assert "Traceback" not in output
    export = tmp_path / "log.parquet"
    result = cli("export", "churn", "--output", str(export))
    assert result.exit_code == 0, result.output
    logged = pd.read_parquet(export)
    assert answered == 650
    assert len(logged) == 650
    assert logged["id"].is_unique


def test_metrics_add_up_across_workers(deployed, relevo_home, database_url, free_port):
    port = free_port()
    proc = _start(relevo_home, database_url, port, workers=2)
    try:
        rows = frame_to_records(make_churn(200, seed=9).drop(columns=["churned"]))
        assert _send(port, rows, per_request=1) == 200
        url = f"http://127.0.0.1:{port}/metrics"
        families = {f.name: f for f in text_string_to_metric_families(httpx.get(url).text)}
        requests = sum(
            s.value
            for s in families["relevo_requests"].samples
            if s.name == "relevo_requests_total" and s.labels["status"] == "200"
        )
        assert requests == 200
        pids = {s.labels["pid"] for s in families["relevo_process_resident_memory_bytes"].samples}
        assert len(pids) >= 2
    finally:
        output = _stop(proc)
    assert proc.returncode in (0, -signal.SIGTERM), output
