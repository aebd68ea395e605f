"""`relevo serve` as a real process: graceful SIGTERM keeps every answered row; several workers
report one set of metrics."""

from __future__ import annotations

import os
import re
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


def _start(
    relevo_home: Path,
    database_url: str,
    port: int,
    workers: int = 1,
    flags: bool = False,
    flush_s: float = 5,
) -> subprocess.Popen:
    env = {
        **os.environ,
        # rows stay queued: only the graceful stop (or the spool's replay) saves them
        "RELEVO_LOG_FLUSH_INTERVAL_S": str(flush_s),
    }
    settings = ["--home", str(relevo_home), "--database-url", database_url]
    if not flags:  # the same settings through the environment
        env.update(RELEVO_HOME=str(relevo_home), RELEVO_DATABASE_URL=database_url)
        settings = []
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "relevo",
            *settings,
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
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


def _workers(parent: int) -> list[int]:
    """The server processes uvicorn started under `parent` (not its resource tracker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return sorted(found)


def _logged(output: str, message: str) -> dict[int, str]:
    """The lines of relevo's logger that say `message`, by the worker process that said them."""
    pattern = re.compile(r"^INFO relevo\.[a-z._]+ \[(\d+)\]: (.*)$", re.MULTILINE)
    return {int(pid): text for pid, text in pattern.findall(output) if message in text}


def test_every_worker_logs_what_it_serves_and_flushes(
    deployed, relevo_home, database_url, free_port
):
    port = free_port()
    proc = _start(relevo_home, database_url, port, workers=2)
    try:
        workers = _workers(proc.pid)
        rows = frame_to_records(make_churn(60, seed=3).drop(columns=["churned"]))
        assert _send(port, rows, per_request=1) == 60
    finally:
        output = _stop(proc)
    assert len(workers) == 2, output
    # relevo's INFO lines came from every worker, each naming its process, as with one worker
    serves = _logged(output, "deployment 'churn' now serves ['churn:1']")
    assert set(serves) == set(workers), output
    flushed = _logged(output, "prediction log flushed")
    assert set(flushed) == set(workers), output
    written = [int(re.search(r"(\d+) rows written", t).group(1)) for t in flushed.values()]
    assert sum(written) == 60


def _ready(port: int) -> bool:
    """Whether the server answers ready; a worker still starting may hold the connection it
    accepted past the client's timeout (a busy machine): not ready yet."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).is_success
    except httpx.TransportError:
        return False


def test_a_killed_worker_is_replaced_and_its_rows_stored(
    deployed, relevo_home, database_url, free_port, cli, tmp_path
):
    port = free_port()
    # no flush during the test: the answered rows are in the workers' queues and spools only
    proc = _start(relevo_home, database_url, port, workers=2, flush_s=600)
    try:
        killed = _workers(proc.pid)
        rows = frame_to_records(make_churn(200, seed=6).drop(columns=["churned"]))
        ids = set()
        for chunk in (rows[i : i + 4] for i in range(0, len(rows), 4)):
            # a connection of its own each: both workers answer some
            answer = httpx.post(
                f"http://127.0.0.1:{port}/v1/deployments/churn/predict", json={"instances": chunk}
            )
            assert answer.status_code == 200
            ids |= {p["id"] for p in answer.json()["predictions"]}
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # uvicorn starts a new worker for each
            replacements = set(_workers(proc.pid)) - set(killed)
            if len(replacements) == 2 and _ready(port):
                break
            time.sleep(0.2)
        assert len(replacements) == 2
        # the replacements stored what the killed workers had answered (from their spools)
        export = tmp_path / "log.parquet"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert cli("export", "churn", "--output", str(export)).exit_code == 0
            if len(pd.read_parquet(export)) >= len(ids):
                break
            time.sleep(0.5)
        logged = pd.read_parquet(export)
        assert set(logged["id"]) == ids and logged["id"].is_unique
    finally:
        output = _stop(proc)
    # and said so
    recovered = _logged(output, "stored the rows a stopped process left")
    assert recovered and set(recovered) <= replacements, output


def test_serve_uses_the_home_and_database_given_as_flags(
    deployed, relevo_home, database_url, free_port, tmp_path, monkeypatch
):
    # another home in the environment must not win over the flags
    monkeypatch.setenv("RELEVO_HOME", str(tmp_path / "elsewhere"))
    port = free_port()
    proc = _start(relevo_home, database_url, port, flags=True)
    try:
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz").json()
        assert ready["deployments"] == {"churn": "churn:1"}
    finally:
        _stop(proc)


def test_serve_on_a_port_in_use_says_so(deployed, relevo_home, database_url):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "RELEVO_HOME": str(relevo_home), "RELEVO_DATABASE_URL": database_url}
        result = subprocess.run(
            [sys.executable, "-m", "relevo", "serve", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 6
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "relevo serving on" not in result.stdout
    assert "Traceback" not in result.stderr
