"""`relevo serve` drains on SIGTERM: /readyz fails at once while predictions are
still answered for RELEVO_SHUTDOWN_DRAIN_S, then the server stops with every answered row
logged; and the Prometheus multiprocess folder it is given starts empty."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from relevo.datasets import make_churn
from relevo.serving.records import frame_to_records

pytestmark = pytest.mark.slow

STALE = """
from prometheus_client import Counter
left = Counter("relevo_requests", "left by a dead process",
               ["deployment", "model", "protocol", "status"])
left.labels("churn", "churn:1", "json", "200").inc(1000)
"""


def _serve(
    home: Path, database_url: str, port: int, metrics_dir: Path, workers: int
) -> subprocess.Popen:
    env = {
        **os.environ,
        "RELEVO_HOME": str(home),
        "RELEVO_DATABASE_URL": database_url,
        "RELEVO_SHUTDOWN_DRAIN_S": "5",
        "RELEVO_LOG_FLUSH_INTERVAL_S": "5",  # rows stay queued: only the graceful stop saves them
        "RELEVO_METRICS_DIR": str(metrics_dir),
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
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read().decode() if proc.stdout else "server died")
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("relevo serve did not become ready")


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_fails_readiness_first_then_stops_with_the_log_flushed(
    deployed, relevo_home, database_url, cli, free_port, tmp_path, workers
):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    # a previous container in the same pod left its counters in the folder
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    subprocess.run([sys.executable, "-c", STALE], env=env, check=True)
    stale = set(metrics_dir.glob("*.db"))
    assert stale

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _serve(relevo_home, database_url, port, metrics_dir, workers)
    rows = frame_to_records(make_churn(30, seed=5).drop(columns=["churned"]))
    try:
        with httpx.Client(base_url=base) as client:
            for row in rows[:20]:
                assert (
                    client.post(
                        "/v1/deployments/churn/predict", json={"instances": [row]}
                    ).status_code
                    == 200
                )
            families = {
                f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)
            }
            answered = sum(
                s.value
                for s in families["relevo_requests"].samples
                if s.name == "relevo_requests_total"
            )
            assert answered == 20  # the dead process's 1000 are gone, every worker counts
            assert not stale & set(metrics_dir.glob("*.db"))

            os.killpg(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + 4
            ready = client.get("/readyz")
            while ready.status_code == 200 and time.monotonic() < deadline:
                ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["ready"] is False
            # the V2 protocol's probe (KServe's) says the same, from the same check
            v2 = client.get("/v2/health/ready")
            assert (v2.status_code, v2.json()) == (503, {"ready": False})
            # still answering while the load balancers take it out
            assert client.get("/healthz").status_code == 200
            late = client.post("/v1/deployments/churn/predict", json={"instances": rows[20:]})
            assert late.status_code == 200
            assert len(late.json()["predictions"]) == 10
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = output.decode()
    assert proc.returncode in (0, -signal.SIGTERM), text
    assert "Application shutdown complete" in text
    export = tmp_path / "log.parquet"
    result = cli("export", "churn", "--output", str(export))
    assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(export)) == 30


def test_emptying_the_metrics_folder_deletes_only_metric_files(tmp_path: Path) -> None:
    """RELEVO_METRICS_DIR set to RELEVO_HOME (one volume for everything) deleted the store,
    relevo.db, with every other *.db: the server then started on an empty store."""
    from relevo.serving.metrics import empty_multiprocess_dir

    for name in ("counter_123.db", "gauge_livemax_123.db", "histogram_9.db", "summary_9.db"):
        (tmp_path / name).write_bytes(b"x")  # a dead worker's metrics
    (tmp_path / "relevo.db").write_bytes(b"the store")
    (tmp_path / "notes.db").write_bytes(b"someone else's")
    assert empty_multiprocess_dir(tmp_path) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db", "relevo.db"]
    assert (tmp_path / "relevo.db").read_bytes() == b"the store"
