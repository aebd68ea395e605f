"""prometheus-client's multiprocess mode across worker processes, one of them killed outright
(`kill -9`, as uvicorn then replaces it): what /metrics shows of it afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import relevo

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="kill -9 is a POSIX signal")

SRC = str(Path(relevo.__file__).resolve().parents[1])

WORKER = """
import os, signal, sys
from prometheus_client import CollectorRegistry
from relevo.serving.metrics import ServingMetrics, render_metrics
m = ServingMetrics(CollectorRegistry())
m.set_rollouts({("churn", "churn:1", "churn:2"): (0.3, 0.0)})
m.rows_of("churn", "churn:1").inc(5)
if sys.argv[1] == "killed":
    print(os.getpid(), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
m.set_rollouts({("churn", "churn:2", ""): (0.0, 0.0)})
sys.stdout.write(render_metrics()[0].decode())
"""


def _worker(role: str, folder: Path) -> str:
    path = os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder), "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, "-c", WORKER, role], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == (-9 if role == "killed" else 0), done.stderr.decode()
    return done.stdout.decode()


def _lines(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{")]


def test_a_killed_workers_gauges_do_not_outlive_it(tmp_path):
    dead = _worker("killed", tmp_path).strip()
    text = _worker("live", tmp_path)
    weights = _lines(text, "relevo_deployment_challenger_weight")
    # the live worker moved churn:2 from challenger to champion; the dead one's 0.3 is gone
    assert weights and all(line.endswith(" 0.0") for line in weights), weights
    for gauge in ("relevo_process_cpu_seconds", "relevo_process_resident_memory_bytes"):
        shown = _lines(text, gauge)
        assert len(shown) == 1, shown  # the live worker's alone
        assert f'pid="{dead}"' not in shown[0]


def test_a_killed_workers_counts_are_kept(tmp_path):
    _worker("killed", tmp_path)
    text = _worker("live", tmp_path)
    # counters of a process that ended stay in the sums (Prometheus expects them not to drop)
    rows = _lines(text, "relevo_predictions_total")
    assert rows == ['relevo_predictions_total{deployment="churn",model="churn:1"} 10.0']
