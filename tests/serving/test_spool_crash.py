"""`kill -9` under load loses no answered row: the spool is replayed at the next start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from relevo.datasets import make_churn
from relevo.serving.records import frame_to_records

pytestmark = pytest.mark.slow


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(home: Path, database_url: str, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "RELEVO_HOME": str(home),
        "RELEVO_DATABASE_URL": database_url,
        # rows stay in the queue until the kill: only the spool can save them
        "RELEVO_LOG_FLUSH_INTERVAL_S": "30",
        "RELEVO_LOG_FLUSH_ROWS": "1000000",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "relevo", "serve", "--port", str(port)],
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


def _load(port: int, rows: list[dict], answered: list[str], stop: threading.Event) -> None:
    """One client sending 1-3 row requests until the server goes away or `stop` is set."""
    url = f"http://127.0.0.1:{port}/v1/deployments/churn/predict"
    with httpx.Client(timeout=10) as client:
        i = 0
        while not stop.is_set():
            batch = rows[i % len(rows) : i % len(rows) + 1 + i % 3]
            i += 1
            try:
                response = client.post(url, json={"instances": batch})
            except httpx.TransportError:
                return  # killed
            if response.status_code == 200:
                answered.extend(p["id"] for p in response.json()["predictions"])


def test_rows_answered_before_a_kill_9_are_stored_once_after_restart(
    rv, churn_pipeline, churn_frame, relevo_home, database_url
):
    version = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", version.ref, key="customer_id")
    rows = frame_to_records(make_churn(200, seed=5).drop(columns=["churned"]))
    port = _free_port()
    server = _serve(relevo_home, database_url, port)
    answered: list[str] = []
    stop = threading.Event()
    clients = [threading.Thread(target=_load, args=(port, rows, answered, stop)) for _ in range(8)]
    try:
        for c in clients:
            c.start()
        deadline = time.monotonic() + 20
        while len(answered) < 400 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(server.pid, signal.SIGKILL)  # mid-load: clients are still sending
        server.wait(timeout=30)
    finally:
        stop.set()
        for c in clients:
            c.join(timeout=30)
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
    assert len(answered) >= 400
    spool = relevo_home / "spool"
    left = list(spool.rglob("*.spool"))
    assert left, "the killed process left its spool"

    restarted = _serve(relevo_home, database_url, _free_port())
    try:
        stored = Counter(rv.store.predictions.ids("churn"))
        missing = [i for i in answered if i not in stored]
        assert not missing, f"{len(missing)} of {len(answered)} answered rows were lost"
        assert max(stored.values()) == 1
        assert not any(p.exists() for p in left), "replayed segments are deleted"
    finally:
        os.killpg(restarted.pid, signal.SIGTERM)
        restarted.communicate(timeout=60)
