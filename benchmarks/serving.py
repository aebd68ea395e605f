"""Serving benchmark: relevo against a bare FastAPI endpoint, MLServer and BentoML.

Run by hand, never part of the test suite (it takes minutes and needs `wrk`):

    .venv/bin/python benchmarks/serving.py [--duration 10] [--skip-peers] [--profile]
                                           [--ab-rounds 4] [--connections 32]
                                           [--compile onnx]

Two models, each through every server (`--models churn,cheap`, default both), reported side by
side: the churn pipeline (ColumnTransformer + OneHotEncoder, from `relevo.datasets.make_churn`),
whose ~2.6 ms model call hides the server's own cost, and a cheap all-numeric model
(StandardScaler + LogisticRegression on 30 numeric features, fitted on a DataFrame), which shows
it. One worker each, the same thread-limiting environment, one after the other on loopback:

  (a) relevo, prediction log and metrics on       `relevo serve`
  (b) relevo, prediction log off                  RELEVO_LOG_PREDICTIONS=false
  (c) bare FastAPI                                `await request.json()`, one-row DataFrame
                                                  (cheap model: a NumPy row), `predict_proba`
                                                  per request, uvicorn
  (d) in-process floor                            `predict_proba` on a one-row DataFrame
  (e) MLServer 1.7 + mlserver-sklearn             V2 request, pandas codec
  (f) BentoML 1.4                                 JSON list of dicts -> DataFrame
  (g) relevo, shadow challenger, mirror 1.0       `--strategies shadow` (default: g and h)
  (h) relevo, canary 0.1 keyed by customer_id     `--strategies canary`; a new key per request

(g) and (h) serve MODEL:1 with MODEL:2 (the same model file registered again) as challenger,
each from its own RELEVO_HOME and database, and are compared with (a): the canary's cost in
2xx/s at c=N and the shadow's c=1 p50 minus (a)'s.

The peers live in their own virtual environments under benchmarks/.work/ (git-ignored), made
on the first run; they never touch relevo's dependencies. Each server is started in its own
process group, checked to answer the fixed request correctly (same probability as in-process),
warmed up for 2 s, loaded with `wrk -t1 -c1` and `wrk -t1 -c32`, then stopped. Throughput counts
2xx answers only, and every non-2xx or socket error is reported, so a server that answers errors
fast cannot look fast. (a), (b), (g), (h) and (c) then stay up together for interleaved c=N
rounds (a b g h c, c h g b a, ...; 8 by default): this machine's speed drifts by a fifth over
minutes, so the ratios the goals are about (the logging cost 1 - a/b, the canary's 1 - h/a,
relevo over bare FastAPI a/c) are the ratios of the medians over pairs measured seconds apart
(the table's runs and each round make a pair), each pair's own figure printed for the spread.
The server's CPU time per request is read from /proc around each loaded run, and after (a)
stops its prediction log is checked to hold a row for every 2xx answer. Results go to stdout
as one table and to benchmarks/.work/serving-results.json.
`--profile` samples (a) with py-spy during one more loaded run. See docs/performance.md.
"""

from __future__ import annotations

import os

# every server and the in-process floor get the same single-threaded numeric libraries
THREAD_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
}
os.environ.update(THREAD_ENV)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
APPS = HERE / "serving_apps"
#: posts the body; "__KEY__" in it becomes a routing key of its own per request
LUA = HERE / "wrk_post.lua"
BIN = Path(sys.executable).parent  # the venv relevo is installed in
RESULTS = WORK / "serving-results.json"

MODEL_NAME = "churn"
WARMUP_S = 2
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 45.0  # relevo drains its prediction log on SIGTERM (graceful timeout 30 s)
PIP_TIMEOUT_S = 1200.0

MLSERVER_PINS = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1"]
BENTOML_PINS = ["bentoml==1.4.*"]


class BenchError(Exception):
    """A step failed; the message says which and why."""


# ---- processes -----------------------------------------------------------------------------


_LIVE: list[subprocess.Popen[bytes]] = []  # servers started and not yet stopped


def start_server(
    name: str, argv: list[str], env: dict[str, str], cwd: Path | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start a server in its own process group (session), output to a log file."""
    log_path = WORK / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _LIVE.append(proc)
    return proc, log_path


def stop_server(proc: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> str:
    """SIGTERM the whole process group, wait, SIGKILL as a fallback. Returns how it ended."""
    how = "already exited"
    try:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
                how = "stopped (SIGTERM)"
            except subprocess.TimeoutExpired:
                how = f"killed (SIGKILL after {timeout_s:.0f} s)"
        # children (workers, arbiters) may outlive the leader: clear the group either way
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    finally:
        if proc in _LIVE:
            _LIVE.remove(proc)
    return how


def stop_all() -> None:
    for proc in list(_LIVE):
        stop_server(proc, timeout_s=10)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    | " + line for line in text[-lines:])


def http(url: str, body: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(
    proc: subprocess.Popen[bytes], url: str, log_path: Path, timeout_s: float = READY_TIMEOUT_S
) -> float:
    """Poll `url` until it answers 200; fail early when the server exits. Returns seconds."""
    t0 = time.monotonic()
    last = "no answer yet"
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            raise BenchError(
                f"exited with code {proc.returncode} before it was ready\n{tail(log_path)}"
            )
        try:
            status, data = http(url, timeout=2.0)
            if status == 200:
                return time.monotonic() - t0
            last = f"HTTP {status}: {data[:200]!r}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise BenchError(f"not ready after {timeout_s:.0f} s ({last})\n{tail(log_path)}")


# ---- wrk -----------------------------------------------------------------------------------


@dataclass
class Load:
    """One wrk run."""

    connections: int
    duration_s: float
    requests: int
    non2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    load_avg: float = 0.0  # the machine's 1-min load average when the run started
    cpu_s: float | None = None  # the server's CPU time (user + system, its processes) in the run

    @property
    def cpu_us_per_request(self) -> float | None:
        if self.cpu_s is None or not self.requests:
            return None
        return self.cpu_s / self.requests * 1e6

    @property
    def ok(self) -> int:
        """2xx answers (wrk counts every completed response in `requests`)."""
        return self.requests - self.non2xx

    @property
    def ok_per_s(self) -> float:
        return self.ok / self.duration_s if self.duration_s else 0.0

    @property
    def errors(self) -> int:
        return self.non2xx + self.socket_errors


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process and of every live process under it (relevo's
    log writer process, uvicorn workers), plus their reaped children (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")

    def stat(p: int) -> list[str] | None:
        try:
            return Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None

    root = stat(pid)
    if root is None:
        return None
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = stat(int(entry.name))
            if fields is not None:  # state is [0], the parent's pid [1]
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        fields = root if p == pid else stat(p)
        if fields is not None:
            # utime, stime, cutime, cstime are [11]..[14]
            total += sum(int(x) for x in fields[11:15])
        todo.extend(parents.get(p, []))
    return total / ticks


def run_wrk(url: str, body_file: Path, connections: int, duration_s: float) -> Load:
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration_s:g}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA),
        url,
        "--",
        str(body_file),
    ]
    load_avg = os.getloadavg()[0]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=duration_s + 60, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish: {' '.join(argv)}") from None
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise BenchError(f"wrk failed (exit {done.returncode}): {done.stderr or done.stdout}")
    r = json.loads(line.removeprefix("WRK_RESULT "))
    return Load(
        connections=connections,
        duration_s=r["duration_us"] / 1e6,
        requests=r["requests"],
        non2xx=r["non2xx"],
        socket_errors=r["connect"] + r["read"] + r["write"] + r["timeout"],
        p50_ms=r["p50_us"] / 1000.0,
        p99_ms=r["p99_us"] / 1000.0,
        load_avg=load_avg,
    )


# ---- what is measured ----------------------------------------------------------------------


@dataclass
class Row:
    key: str
    label: str
    c1: Load | None = None
    c32: Load | None = None
    floor_p50_ms: float | None = None
    floor_p99_ms: float | None = None
    note: str = ""  # "n/a: reason" when the row could not be measured
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def load(x: Load | None) -> dict[str, Any] | None:
            if x is None:
                return None
            return {
                "connections": x.connections,
                "duration_s": round(x.duration_s, 3),
                "requests": x.requests,
                "ok_2xx": x.ok,
                "non_2xx": x.non2xx,
                "socket_errors": x.socket_errors,
                "ok_per_s": round(x.ok_per_s, 1),
                "p50_ms": round(x.p50_ms, 3),
                "p99_ms": round(x.p99_ms, 3),
                "load_avg_1min_at_start": round(x.load_avg, 2),
                "cpu_us_per_request": (
                    None if x.cpu_us_per_request is None else round(x.cpu_us_per_request, 1)
                ),
            }

        out: dict[str, Any] = {"key": self.key, "server": self.label}
        if self.floor_p50_ms is not None:
            out["in_process_p50_ms"] = round(self.floor_p50_ms, 4)
            out["in_process_p99_ms"] = round(self.floor_p99_ms or 0.0, 4)
        out["c1"] = load(self.c1)
        out["c32"] = load(self.c32)
        if self.note:
            out["note"] = self.note
        out.update(self.extra)
        return out


@dataclass
class Server:
    """How to start one HTTP server and talk to it."""

    key: str
    label: str
    argv: list[str]
    env: dict[str, str]
    health_url: str
    predict_url: str
    body: dict[str, Any]
    probability: Callable[[Any], float]  # the positive-class probability in its answer
    cwd: Path | None = None


class Running:
    """One server under test: started in its own process group, checked, loaded, stopped.
    Every wrk run against it is kept (warm-up included) to count what it answered."""

    def __init__(self, server: Server, expected: float) -> None:
        self.server = server
        self.expected = expected
        self.row = Row(server.key, server.label)
        self.runs: list[Load] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.body_file = WORK / f"body-{server.key}.json"

    @property
    def usable(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and not self.row.note

    def fail(self, exc: BenchError) -> None:
        self.row.note = f"n/a: {str(exc).splitlines()[0]}"
        print(f"[{self.server.key}] FAILED: {exc}", flush=True)

    def start(self) -> bool:
        """Start the server, wait until it is ready and answers the fixed request right."""
        srv = self.server
        self.body_file.write_bytes(json.dumps(srv.body).encode())
        print(f"[{srv.key}] {srv.label}: starting", flush=True)
        self.proc, log_path = start_server(srv.key, srv.argv, srv.env, srv.cwd)
        try:
            took = wait_ready(self.proc, srv.health_url, log_path)
            print(f"[{srv.key}] ready in {took:.1f} s (pid {self.proc.pid})", flush=True)
            status, data = http(srv.predict_url, json.dumps(srv.body).encode(), timeout=30)
            if status != 200:
                raise BenchError(f"the check request got HTTP {status}: {data[:300]!r}")
            got = srv.probability(json.loads(data))
            if abs(got - self.expected) > 1e-6:
                raise BenchError(
                    f"wrong answer: probability {got!r}, in-process predict_proba gives "
                    f"{self.expected!r}"
                )
            self.row.extra["check_probability"] = got
            self.row.extra["check_requests"] = 1
            return True
        except BenchError as exc:
            self.fail(exc)
            self.stop()
            return False

    def load(self, connections: int, duration_s: float, show: bool = True) -> Load:
        pid = self.proc.pid if self.proc is not None else None
        before = process_cpu_s(pid) if pid else None
        x = run_wrk(self.server.predict_url, self.body_file, connections, duration_s)
        after = process_cpu_s(pid) if pid else None
        if before is not None and after is not None:
            x.cpu_s = after - before
        self.runs.append(x)
        if show:
            print(_progress(self.server.key, x), flush=True)
        return x

    def measure(self, duration_s: float, connections: int) -> None:
        """Warm up, then the measured runs at c=1 and c=N; a failure marks the row n/a."""
        try:
            self.load(connections, WARMUP_S, show=False)
            self.row.c1 = self.load(1, duration_s)
            self.row.c32 = self.load(connections, duration_s)
        except BenchError as exc:
            self.fail(exc)

    def stop(self) -> None:
        if self.proc is not None and "stopped" not in self.row.extra:
            how = stop_server(self.proc)
            print(f"[{self.server.key}] {how}", flush=True)
            self.row.extra["stopped"] = how


def measure(server: Server, expected: float, duration_s: float, connections: int) -> Row:
    """Start, check, warm up, load at c=1 and c=N, stop."""
    running = Running(server, expected)
    try:
        if running.start():
            running.measure(duration_s, connections)
    finally:
        running.stop()
    return running.row


def _progress(key: str, x: Load) -> str:
    errs = f", {x.non2xx} non-2xx, {x.socket_errors} socket errors" if x.errors else ""
    return (
        f"[{key}] c={x.connections}: {x.ok_per_s:,.0f} 2xx/s, p50 {x.p50_ms:.2f} ms, "
        f"p99 {x.p99_ms:.2f} ms{errs}"
    )


def in_process_floor(model: Any, frame: Any, calls: int = 3000) -> tuple[float, float, float]:
    """p50 and p99 (ms) of `predict_proba` on a prebuilt one-row DataFrame, and its answer."""
    for _ in range(200):
        model.predict_proba(frame)
    times = []
    clock = time.perf_counter
    for _ in range(calls):
        t0 = clock()
        model.predict_proba(frame)
        times.append(clock() - t0)
    times.sort()
    p50 = statistics.median(times) * 1000.0
    p99 = times[int(0.99 * (len(times) - 1))] * 1000.0
    return p50, p99, float(model.predict_proba(frame)[0, 1])


# ---- setup ---------------------------------------------------------------------------------


def train_cheap(workdir: Path) -> tuple[Path, Path, dict[str, Any]]:
    """Fit the cheap model (StandardScaler + LogisticRegression, 30 numeric features, on a
    DataFrame); save it (joblib) and its training data (CSV)."""
    import joblib
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    columns = [f"x{i:02d}" for i in range(30)]
    data = pd.DataFrame(rng.normal(size=(5000, 30)), columns=columns)
    weights = rng.normal(size=30)
    data["target"] = (data[columns].to_numpy() @ weights + rng.normal(size=5000) > 0).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(data[columns], data["target"])
    model_path = workdir / "model.joblib"
    joblib.dump(model, model_path)
    train_path = workdir / "train.csv"
    data.to_csv(train_path, index=False)
    row = {c: float(data[c].iloc[0]) for c in columns}
    return model_path, train_path, row


def train(workdir: Path, model_key: str = "churn") -> tuple[Path, Path, dict[str, Any]]:
    """Fit the model to serve; save it (joblib) and its training data (CSV)."""
    if model_key == "cheap":
        return train_cheap(workdir)
    import joblib
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from relevo.datasets import (
        CHURN_CATEGORICAL,
        CHURN_FEATURES,
        CHURN_ID,
        CHURN_NUMERIC,
        CHURN_TARGET,
        make_churn,
    )

    data = make_churn(5000, seed=0)
    pipeline = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        (
                            "num",
                            make_pipeline(SimpleImputer(), StandardScaler()),
                            CHURN_NUMERIC,
                        ),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), CHURN_CATEGORICAL),
                    ]
                ),
            ),
            ("clf", LogisticRegression(max_iter=1000)),
        ]
    )
    pipeline.fit(data[CHURN_FEATURES], data[CHURN_TARGET])
    model_path = workdir / "model.joblib"
    joblib.dump(pipeline, model_path)
    train_path = workdir / "train.csv"
    data.to_csv(train_path, index=False)
    complete = data[CHURN_FEATURES].notna().all(axis=1)
    first = data[complete].iloc[0]
    row = {CHURN_ID: str(first[CHURN_ID])}
    for col in CHURN_FEATURES:
        value = first[col]
        row[col] = value.item() if hasattr(value, "item") else value
    return model_path, train_path, row


def check_log(run_a: Running, env: dict[str, str], n: int) -> dict[str, Any]:
    """After (a) stopped: the prediction log holds a row for every 2xx answer wrk counted."""
    status = json.loads(relevo_cli(["status", MODEL_NAME, "--json"], env))
    logged = int(status["predictions_logged"])
    answered = sum(x.ok for x in run_a.runs) + int(run_a.row.extra.get("check_requests", 0))
    # wrk stops with up to N requests in flight: the server still answers and logs those
    slack = sum(x.connections for x in run_a.runs)
    complete = answered <= logged <= answered + slack
    print(
        f"log complete: {logged} of {answered}"
        + ("" if logged == answered else f" (+{logged - answered} answered while wrk stopped)")
        + ("" if complete else "  <-- ROWS MISSING"),
        flush=True,
    )
    return {
        "logged": logged,
        "answered_2xx_seen_by_wrk": answered,
        "in_flight_allowance": slack,
        "complete": complete,
    }


def relevo_cli(args: list[str], env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(
        [str(BIN / "relevo"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"relevo {' '.join(args)} failed: {done.stderr or done.stdout}")
    return done.stdout


def peer_venv(name: str, pins: list[str]) -> Path:
    """A virtual environment under benchmarks/.work/ holding one peer; made once, reused."""
    import numpy
    import pandas
    import sklearn

    # the same numeric stack as relevo's venv: the pickle loads and the math is the same
    requirements = [
        *pins,
        f"scikit-learn=={sklearn.__version__}",
        f"pandas=={pandas.__version__}",
        f"numpy=={numpy.__version__}",
        "joblib",
    ]
    venv = WORK / f"venv-{name}"
    stamp = venv / "bench-requirements.txt"
    wanted = "\n".join(requirements) + "\n"
    if stamp.exists() and stamp.read_text() == wanted:
        return venv
    print(f"[setup] creating {venv.relative_to(HERE.parent)}: {' '.join(requirements)}", flush=True)
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    log_path = WORK / "logs" / f"pip-{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as out:
        try:
            done = subprocess.run(
                [
                    str(venv / "bin" / "pip"),
                    "install",
                    "--disable-pip-version-check",
                    *requirements,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=PIP_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"pip install timed out after {PIP_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        raise BenchError(f"pip install failed (see {log_path})\n{tail(log_path)}")
    stamp.write_text(wanted)
    return venv


def source() -> str:
    """The relevo commit measured (read-only git), '+dirty' when src/ has local changes."""
    root = HERE.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# ---- profile -------------------------------------------------------------------------------


def profile_under_load(
    proc: subprocess.Popen[bytes], url: str, body_file: Path, connections: int, seconds: int
) -> tuple[Load | None, dict[str, Any]]:
    """py-spy on the server during an extra c=N run (not a measured one: sampling slows it).
    Returns that run and a summary of the profile (see `summarize_profile`)."""
    spy = shutil.which("py-spy") or (str(BIN / "py-spy") if (BIN / "py-spy").exists() else None)
    if spy is None:
        print("[profile] py-spy not found: `.venv/bin/pip install py-spy` to profile", flush=True)
        return None, {}
    raw = WORK / "profile-relevo-a.txt"
    svg = WORK / "profile-relevo-a.svg"
    for path in (raw, svg):
        path.unlink(missing_ok=True)
    spies = [
        subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(proc.pid),
                "--duration",
                str(seconds),
                "--rate",
                "200",
                "--threads",
                "--format",
                fmt,
                "-o",
                str(path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fmt, path in (("raw", raw), ("flamegraph", svg))
    ]
    try:
        time.sleep(0.5)
        load = run_wrk(url, body_file, connections, seconds)
    finally:
        for sp in spies:
            try:
                sp.wait(timeout=seconds + 30)
            except subprocess.TimeoutExpired:
                sp.kill()
                sp.wait(timeout=10)
    summary = summarize_profile(raw)
    if summary:
        summary["raw"] = str(raw)
        summary["flamegraph"] = str(svg) if svg.exists() else None
    return load, summary


# Leaf frames that are a thread waiting, not working. py-spy's own idle detection does not
# work on every kernel (here it counts blocked threads as busy), so the summary drops these.
_IDLE_LEAVES = (
    "_worker (concurrent/futures/thread.py",  # a pool thread waiting for work
    "Condition.wait (threading.py",
    "Event.wait (threading.py",
    "Thread.join (threading.py",
    "sleep (",
)
#: own time in this frame is uvloop's C code: epoll, socket reads and writes, and waiting
_LOOP_LEAF = "Runner.run (asyncio/runners.py"


def summarize_profile(raw: Path, n: int = 12) -> dict[str, Any]:
    """From py-spy's collapsed stacks (recorded with --threads): busy samples per thread, the
    functions with the most own time, and relevo's own functions by total time."""
    if not raw.exists():
        return {}
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    busy = 0
    loop_c = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        parts = stack.split(";")
        thread = "?"
        if parts and parts[0].startswith("thread ("):
            thread = _thread_group(parts[0].split(": ", 1)[-1])
            parts = parts[1:]
        frames = [_short(f) for f in parts if not f.startswith("process ")]
        if not frames or frames[-1].startswith(_IDLE_LEAVES):
            continue
        leaf = frames[-1]
        if leaf.startswith(_LOOP_LEAF):
            loop_c += count
            leaf = "uvloop C code: epoll, socket I/O, waiting (event loop)"
        busy += count
        threads[thread] += count
        own[_no_line(leaf)] += count
        for f in {_no_line(f) for f in frames}:
            total[f] += count
            if "(relevo/" in f and "(relevo/cli/" not in f:
                ours[f] += count
    if not busy:
        return {}

    def pct(c: int) -> float:
        return round(100.0 * c / busy, 1)

    return {
        "busy_samples": busy,
        "threads": {t: pct(c) for t, c in threads.most_common()},
        "top_own": [(f, pct(c), pct(total.get(f, c))) for f, c in own.most_common(n)],
        "relevo_total": [(f, pct(c)) for f, c in ours.most_common(n)],
    }


def _thread_group(name: str) -> str:
    if name == "MainThread":
        return "event loop (main thread)"
    if name.startswith(("uvloop_", "ThreadPoolExecutor", "asyncio_")):
        return "worker threads (model calls)"
    return name


def _no_line(frame: str) -> str:
    # "func (module.py:123)" -> "func (module.py)"
    name, _, where = frame.partition(" (")
    if not where:
        return frame
    return f"{name} ({where.rsplit(':', 1)[0].rstrip(')')})"


def _short(frame: str) -> str:
    # "func (path/to/module.py:123)" -> "func (module.py:123)"
    name, _, where = frame.partition(" (")
    if not where:
        return frame
    where = where.rstrip(")")
    marker = "site-packages/"
    if marker in where:
        where = where.split(marker, 1)[1]
    elif "/src/" in where:
        where = where.split("/src/", 1)[1]
    return f"{name} ({where})"


# ---- report --------------------------------------------------------------------------------


def fmt_ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def table(rows: list[Row], connections: int) -> str:
    head = [
        "server",
        "c=1 p50 ms",
        "c=1 p99 ms",
        f"c={connections} 2xx/s",
        f"c={connections} p50 ms",
        f"c={connections} p99 ms",
        f"c={connections} CPU/req",
        "errors",
    ]
    body = []
    for r in rows:
        if r.note:
            body.append([r.label, r.note, "", "", "", "", "", ""])
            continue
        if r.floor_p50_ms is not None:
            body.append(
                [r.label, fmt_ms(r.floor_p50_ms), fmt_ms(r.floor_p99_ms), "-", "-", "-", "-", "-"]
            )
            continue
        c1, c32 = r.c1, r.c32
        assert c1 is not None and c32 is not None
        errs = c1.errors + c32.errors
        body.append(
            [
                r.label,
                fmt_ms(c1.p50_ms),
                fmt_ms(c1.p99_ms),
                f"{c32.ok_per_s:,.0f}",
                fmt_ms(c32.p50_ms),
                fmt_ms(c32.p99_ms),
                "-" if c32.cpu_us_per_request is None else f"{c32.cpu_us_per_request:,.0f} us",
                str(errs) if errs else "0",
            ]
        )
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    lines = []
    for i, cells in enumerate([head, *body]):
        lines.append(
            "| "
            + " | ".join(
                str(c).ljust(widths[j]) if j == 0 else str(c).rjust(widths[j])
                for j, c in enumerate(cells)
            )
            + " |"
        )
        if i == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def paired(
    by_key: dict[str, Row], rounds: list[dict[str, float]], x: str, y: str
) -> tuple[float | None, list[float]]:
    """x's c=N 2xx/s over y's: the table's runs and each interleaved round make a pair; the
    ratio of the two medians, and each pair's own ratio (the spread)."""

    def rps(key: str) -> float | None:
        r = by_key.get(key)
        if r is None or r.note or r.c32 is None or r.c32.ok_per_s <= 0:
            return None
        return r.c32.ok_per_s

    first_x, first_y = rps(x), rps(y)
    if not first_x or not first_y:
        return None, []
    pairs = [(first_x, first_y)] + [(r[x], r[y]) for r in rounds if r.get(x) and r.get(y)]
    med_x = statistics.median(p[0] for p in pairs)
    med_y = statistics.median(p[1] for p in pairs)
    return med_x / med_y, [round(px / py, 4) for px, py in pairs]


def ratios(by_key: dict[str, Row], rounds: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, name in (("c", "bare_fastapi"), ("e", "mlserver"), ("f", "bentoml")):
        ratio, each = paired(by_key, rounds, "a", key)
        out[f"a_over_{name}_c32_rps"] = ratio
        if key == "c":
            out["a_over_bare_fastapi_runs"] = each
    # the logging cost: 1 - (a)/(b) over the table's runs and the interleaved rounds
    ratio, each = paired(by_key, rounds, "a", "b")
    out["logging_cost"] = None if ratio is None else 1.0 - ratio
    out["logging_cost_runs"] = [round(1.0 - x, 4) for x in each] or None
    ra, rd, rc = by_key.get("a"), by_key.get("d"), by_key.get("c")
    if ra and ra.c1 and not ra.note and rd and rd.floor_p50_ms is not None:
        out["a_c1_p50_over_floor_ms"] = ra.c1.p50_ms - rd.floor_p50_ms
    else:
        out["a_c1_p50_over_floor_ms"] = None
    if ra and ra.c1 and not ra.note and rc and rc.c1 and not rc.note:
        out["a_c1_p50_minus_bare_fastapi_ms"] = ra.c1.p50_ms - rc.c1.p50_ms
    else:
        out["a_c1_p50_minus_bare_fastapi_ms"] = None
    return out


def print_ratios(r: dict[str, Any], connections: int) -> None:
    def x(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}x"

    def ms(v: float | None) -> str:
        return "n/a" if v is None else f"{v:+.2f} ms"

    print(
        f"relevo (a) 2xx/s at c={connections}:  {x(r['a_over_bare_fastapi_c32_rps'])} bare "
        f"FastAPI, {x(r['a_over_mlserver_c32_rps'])} MLServer, "
        f"{x(r['a_over_bentoml_c32_rps'])} BentoML  (goal: >= 4x, >= 8x MLServer)"
    )
    bare = r.get("a_over_bare_fastapi_runs") or []
    if len(bare) > 1:
        print(
            f"  over bare FastAPI from medians of {len(bare)} (a, c) pairs; pair by pair: "
            + ", ".join(f"{v:.2f}x" for v in bare)
        )
    print(
        f"relevo (a) c=1 p50 over the in-process floor: {ms(r['a_c1_p50_over_floor_ms'])};"
        f" over bare FastAPI: {ms(r['a_c1_p50_minus_bare_fastapi_ms'])}"
        " (goal: <= +0.10 ms, issue 13)"
    )
    cost, runs = r["logging_cost"], r["logging_cost_runs"]
    detail = ""
    if runs and len(runs) > 1:
        each = ", ".join(f"{100 * c:+.1f}" for c in runs)
        detail = f" from medians of {len(runs)} (a, b) pairs; pair by pair: {each} %"
    print(
        "logging cost, 1 - (a)/(b) throughput: "
        + ("n/a" if cost is None else f"{100 * cost:.1f} %")
        + detail
        + "  (goal: < 10 %)"
    )


def print_profile(profile: dict[str, Any], n: int) -> None:
    load = profile["load"]
    print()
    print(
        f"py-spy on (a) during one more c={n} run ({load.ok_per_s:,.0f} 2xx/s while sampled), "
        "waiting threads left out; share of busy samples by thread:"
    )
    for thread, share in profile["threads"].items():
        print(f"  {share:5.1f} %  {thread}")
    print("top functions by own time (own %, total %):")
    for name, own_pct, total_pct in profile["top_own"]:
        print(f"  {own_pct:5.1f} %  {total_pct:5.1f} %  {name}")
    print("relevo's own functions by total time:")
    for name, total_pct in profile["relevo_total"]:
        print(f"  {total_pct:5.1f} %  {name}")
    print(f"raw stacks: {profile['raw']}; flame graph: {profile.get('flamegraph')}")


# ---- main ----------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=32, help="connections of the loaded run")
    ap.add_argument("--skip-peers", action="store_true", help="skip MLServer and BentoML")
    ap.add_argument(
        "--models",
        default="churn,cheap",
        help="which models to serve, comma-separated: churn (heavy pipeline), cheap (numeric)",
    )
    ap.add_argument(
        "--ab-rounds",
        type=int,
        default=8,
        help="extra interleaved c=N runs of (a) and (b) for the logging cost (0: none)",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="after measuring (a), profile it with py-spy during one more loaded run",
    )
    ap.add_argument(
        "--strategies",
        default="shadow,canary",
        help="relevo rows beside (a), comma-separated: shadow (g), canary (h); 'none' for neither",
    )
    ap.add_argument(
        "--compile",
        choices=["onnx"],
        default=None,
        help="register relevo's model with --compile onnx (the cheap model; churn has text inputs)",
    )
    args = ap.parse_args()
    args.strategies = [
        x.strip() for x in args.strategies.split(",") if x.strip() not in ("", "none")
    ]
    unknown = [x for x in args.strategies if x not in STRATEGIES]
    if unknown:
        ap.error(f"unknown strategies {unknown}: use shadow and/or canary (or none)")
    if shutil.which("wrk") is None:
        print("wrk is not installed: `apt-get install -y wrk` (Debian package wrk), then rerun.")
        return 2
    # Ctrl-C, and SIGTERM, stop every server cleanly (a shell may start us with SIGINT ignored)
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    WORK.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="relevo-bench-"))
    try:
        return run(args, home)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping servers", flush=True)
        return 130
    except BenchError as exc:
        print(f"benchmark failed: {exc}", flush=True)
        return 1
    finally:
        stop_all()
        shutil.rmtree(home, ignore_errors=True)


def run(args: argparse.Namespace, home: Path) -> int:
    """Every model through every server; one table per model, then the two side by side."""
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in ("churn", "cheap")]
    if unknown or not models:
        raise BenchError(f"unknown model(s) {unknown}: use churn and/or cheap")
    results: dict[str, dict[str, Any]] = {}
    for model_key in models:
        workdir = home / model_key
        workdir.mkdir()
        results[model_key] = run_model(args, workdir, model_key)
    print()
    print(side_by_side(results, args.connections))
    RESULTS.write_text(json.dumps({"models": results}, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(HERE.parent)}")
    return 1 if any(r.get("failed") for r in results.values()) else 0


def side_by_side(results: dict[str, dict[str, Any]], n: int) -> str:
    """The figures the targets name, one column per model."""

    def get(r: dict[str, Any], key: str, c: str, field_: str) -> Any:
        row = next((x for x in r["rows"] if x["key"] == key), None)
        return None if row is None or not row.get(c) else row[c].get(field_)

    def x(v: float | None, unit: str = "x") -> str:
        if v is None:
            return "n/a"
        return f"{v:.2f}{unit}" if unit == "x" else f"{v:+.2f} ms"

    lines = [["", *results]]
    lines.append(
        [
            f"(a) c={n} 2xx/s",
            *(f"{get(r, 'a', 'c32', 'ok_per_s') or 0:,.0f}" for r in results.values()),
        ]
    )
    for name, label in (("bare_fastapi", "bare FastAPI"), ("mlserver", "MLServer")):
        lines.append(
            [
                f"(a) / {label} at c={n}",
                *(x(r["ratios"][f"a_over_{name}_c32_rps"]) for r in results.values()),
            ]
        )
    lines.append(
        [
            "(a) c=1 p50 minus bare FastAPI",
            *(x(r["ratios"]["a_c1_p50_minus_bare_fastapi_ms"], "ms") for r in results.values()),
        ]
    )
    lines.append(
        [f"(a) c={n} p99 ms", *(str(get(r, "a", "c32", "p99_ms")) for r in results.values())]
    )
    for key, label in (("a", "(a) log on"), ("b", "(b) log off"), ("c", "(c) bare FastAPI")):
        lines.append(
            [
                f"{label} CPU/request at c={n}",
                *(
                    f"{get(r, key, 'c32', 'cpu_us_per_request') or 0:,.0f} us"
                    for r in results.values()
                ),
            ]
        )
    for label, name in (
        ("logging cost (median of pairs)", "logging_cost"),
        ("canary (h) cost (median of pairs)", "canary_cost_c32"),
    ):
        cost = []
        for r in results.values():
            c = r["ratios"].get(name)
            runs = r["ratios"].get(name.replace("_c32", "") + "_runs") or []
            spread = (
                f" [{100 * min(runs):+.1f} .. {100 * max(runs):+.1f}], {len(runs)} pairs"
                if runs
                else ""
            )
            cost.append("n/a" if c is None else f"{100 * c:.1f} %{spread}")
        lines.append([label, *cost])
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    return "\n".join(
        " | ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row))
        for row in lines
    )


STRATEGIES = {
    # key, label, the `relevo deploy NAME NAME:2 ...` options that set the strategy up
    "shadow": ("g", "(g) relevo, shadow 1.0", ["--strategy", "shadow", "--mirror", "1.0"]),
    "canary": (
        "h",
        "(h) relevo, canary 0.1 by key",
        ["--strategy", "canary", "--weight", "0.1", "--key", "customer_id"],
    ),
}


def listen_args(port: int) -> list[str]:
    """One worker on loopback at `port` (`relevo serve` and uvicorn take the same flags)."""
    return ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]


def relevo_server(key: str, label: str, env: dict[str, str], row: dict[str, Any]) -> Server:
    """`relevo serve` of the deployment MODEL_NAME in `env`'s home, asked for `row`."""
    port = free_port()
    return Server(
        key,
        label,
        [str(BIN / "relevo"), "serve", *listen_args(port)],
        env,
        f"http://127.0.0.1:{port}/readyz",
        f"http://127.0.0.1:{port}/v1/deployments/{MODEL_NAME}/predict",
        {"instances": [row]},
        lambda ans: float(ans["predictions"][0]["probability"]),
    )


def strategy_home(
    home: Path,
    strategy: str,
    model_path: Path,
    train_path: Path,
    target: str,
    env: dict[str, str],
    compiled: list[str],
) -> dict[str, str]:
    """A RELEVO_HOME (and database) of its own where MODEL:1 is the champion and MODEL:2, the
    same model file registered again, the challenger under `strategy`; returns its env."""
    workdir = home / f"strategy-{strategy}"
    workdir.mkdir()
    own = {**env, "RELEVO_HOME": str(workdir)}
    for _ in range(2):
        register = ["models", "register", MODEL_NAME, str(model_path)]
        relevo_cli([*register, "--reference", str(train_path), "--target", target, *compiled], own)
    relevo_cli(["deploy", MODEL_NAME, f"{MODEL_NAME}:1"], own)
    relevo_cli(["deploy", MODEL_NAME, f"{MODEL_NAME}:2", *STRATEGIES[strategy][2]], own)
    return own


def strategy_ratios(by_key: dict[str, Row], rounds: list[dict[str, float]]) -> dict[str, Any]:
    """Each strategy against (a): its cost in 2xx/s at c=N (medians over the pairs, as the
    logging cost) and its c=1 p50 minus (a)'s."""
    out: dict[str, Any] = {}
    a = by_key.get("a")
    ok_a = a is not None and not a.note and a.c1 is not None and a.c32 is not None
    for name, (key, _, _) in STRATEGIES.items():
        r = by_key.get(key)
        if not ok_a or r is None or r.note or r.c1 is None or r.c32 is None:
            out[f"{name}_cost_c32"] = out[f"{name}_c1_p50_minus_a_ms"] = None
            continue
        assert a is not None and a.c1 is not None and a.c32 is not None
        ratio, each = paired(by_key, rounds, key, "a")
        out[f"{name}_cost_c32"] = None if ratio is None else 1.0 - ratio
        out[f"{name}_cost_runs"] = [round(1.0 - x, 4) for x in each]
        out[f"{name}_c1_p50_minus_a_ms"] = r.c1.p50_ms - a.c1.p50_ms
    return out


def print_strategy_ratios(r: dict[str, Any], connections: int) -> None:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:+.1f} %"

    def ms(v: float | None) -> str:
        return "n/a" if v is None else f"{v:+.2f} ms"

    def spread(runs: list[float] | None) -> str:
        if not runs or len(runs) < 2:
            return ""
        return f" [median of {len(runs)} pairs, {100 * min(runs):+.1f} .. {100 * max(runs):+.1f}]"

    if "canary_cost_c32" in r:
        print(
            f"canary (h) cost at c={connections}, 1 - (h)/(a) 2xx/s: "
            f"{pct(r['canary_cost_c32'])} (goal: < 5 %){spread(r.get('canary_cost_runs'))}; "
            f"c=1 p50 minus (a): {ms(r['canary_c1_p50_minus_a_ms'])}"
        )
    if "shadow_cost_c32" in r:
        print(
            f"shadow (g) c=1 p50 minus (a): {ms(r['shadow_c1_p50_minus_a_ms'])} (goal: within "
            f"0.20 ms); cost at c={connections}, 1 - (g)/(a) 2xx/s: "
            f"{pct(r['shadow_cost_c32'])} (it scores every row twice)"
            f"{spread(r.get('shadow_cost_runs'))}"
        )


def run_model(args: argparse.Namespace, home: Path, model_key: str) -> dict[str, Any]:
    import joblib
    import pandas as pd

    global MODEL_NAME
    MODEL_NAME = model_key
    started = dt.datetime.now(dt.UTC)
    n = args.connections
    duration = args.duration
    base_env = {**os.environ, **THREAD_ENV, "PYTHONUNBUFFERED": "1"}
    for var in ("PROMETHEUS_MULTIPROC_DIR", "RELEVO_DATABASE_URL"):
        base_env.pop(var, None)

    print(f"[setup] training the {model_key} model; RELEVO_HOME={home}", flush=True)
    model_path, train_path, row = train(home, model_key)
    if model_key == "churn":
        from relevo.datasets import CHURN_FEATURES

        features = {c: row[c] for c in CHURN_FEATURES}
    else:
        features = dict(row)
    # the rollout gates stay off in every relevo row: the fixed body gives the challenger a
    # point-mass prediction distribution, so the drift gate rolled the canary (h) back within
    # seconds and the row measured a server without a challenger
    rv_env = {**base_env, "RELEVO_HOME": str(home), "RELEVO_ROLLOUT_EVAL_INTERVAL_S": "0"}
    # --compile onnx: every relevo row serves the compiled form (numeric inputs only: the churn
    # pipeline's text columns cannot be compiled, so its rows stay as they are)
    compiled = ["--compile", args.compile] if args.compile and model_key == "cheap" else []
    if args.compile and not compiled:
        print(f"[setup] {model_key}: text inputs, served without --compile", flush=True)
    elif compiled:
        print(f"[setup] every relevo row serves the {args.compile} form (--compile)", flush=True)
    relevo_cli(
        [
            "models",
            "register",
            MODEL_NAME,
            str(model_path),
            "--reference",
            str(train_path),
            "--target",
            "churned" if model_key == "churn" else "target",
            *compiled,
        ],
        rv_env,
    )
    key = ["--key", "customer_id"] if model_key == "churn" else []
    relevo_cli(["deploy", MODEL_NAME, f"{MODEL_NAME}:1", *key], rv_env)

    # (d) the floor, in this process, on the same model file every server loads
    model = joblib.load(model_path)
    frame = pd.DataFrame([features])
    floor_p50, floor_p99, expected = in_process_floor(model, frame)
    print(
        f"[d] in-process predict_proba: p50 {floor_p50:.3f} ms, p99 {floor_p99:.3f} ms; "
        f"P(churn) of the fixed row = {expected:.6f}",
        flush=True,
    )

    rows: list[Row] = []
    by_key: dict[str, Row] = {}

    def add(r: Row) -> None:
        rows.append(r)
        by_key[r.key] = r

    # (a) relevo with the prediction log and metrics on, (b) with the log off, (g) shadow and
    # (h) keyed canary (a challenger identical to the champion, so their rows show what the
    # strategy's machinery costs, each in its own home and database), (c) bare FastAPI. Each is
    # started, checked and measured at c=1 and c=N in turn, and all stay up for interleaved c=N
    # rounds (a b g h c, c h g b a, ...): this machine's speed drifts by a fifth over minutes,
    # so the ratios the goals are about (logging cost, canary cost, relevo over bare FastAPI)
    # are medians over pairs measured seconds apart, not over runs minutes apart.
    run_a = Running(relevo_server("a", "(a) relevo, log + metrics", rv_env, row), expected)
    run_b = Running(
        relevo_server(
            "b", "(b) relevo, log off", {**rv_env, "RELEVO_LOG_PREDICTIONS": "false"}, row
        ),
        expected,
    )
    runs = [run_a, run_b]
    target = "churned" if model_key == "churn" else "target"
    for strategy in args.strategies:
        skey, label, _ = STRATEGIES[strategy]
        try:
            env = strategy_home(home, strategy, model_path, train_path, target, rv_env, compiled)
        except BenchError as exc:
            failed = Row(skey, label, note=f"n/a: {str(exc).splitlines()[0]}")
            print(f"[{skey}] FAILED: {exc}", flush=True)
            add(failed)
            continue
        server = relevo_server(skey, label, env, row)
        if strategy == "canary":
            server.body = {"instances": [{**row, "customer_id": "__KEY__"}]}
        runs.append(Running(server, expected))
    port = free_port()
    bare = Server(
        "c",
        "(c) bare FastAPI",
        [
            str(BIN / "uvicorn"),
            "bare_fastapi:app",
            "--app-dir",
            str(APPS),
            *listen_args(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        {
            **base_env,
            "BENCH_MODEL_PATH": str(model_path),
            "BENCH_NUMPY": "1" if model_key == "cheap" else "",
        },
        f"http://127.0.0.1:{port}/health",
        f"http://127.0.0.1:{port}/predict",
        features,
        lambda ans: float(ans["probability"]),
    )
    runs.append(Running(bare, expected))
    profile: dict[str, Any] = {}
    rounds: list[dict[str, float]] = []
    log_check: dict[str, Any] = {}
    try:
        for each in runs:
            if each.start():
                each.measure(duration, n)
            if each is run_a and args.profile and run_a.usable and run_a.proc is not None:
                seconds = int(max(10, min(duration, 15)))
                load, summary = profile_under_load(
                    run_a.proc, run_a.server.predict_url, run_a.body_file, n, seconds
                )
                if load is not None:
                    run_a.runs.append(load)
                    profile.update(summary, load=load)
        up = [x for x in runs if x.usable]
        if args.ab_rounds and run_a.usable and len(up) > 1:
            names = " ".join(x.server.key for x in up)
            print(f"[rounds] {args.ab_rounds} interleaved rounds of {names} at c={n}", flush=True)
            for i in range(args.ab_rounds):
                order = up if i % 2 == 0 else up[::-1]
                got = {x.server.key: x.load(n, duration).ok_per_s for x in order}
                rounds.append(got)
        run_a.stop()
        if run_a.row.c32 is not None and not run_a.row.note:
            log_check = check_log(run_a, rv_env, n)
    except BenchError as exc:
        print(f"[rounds] FAILED: {exc}", flush=True)
        for each in runs:
            if not each.row.note:
                each.fail(exc)
    finally:
        for each in runs:
            each.stop()
    for each in runs:
        add(each.row)

    floor = Row("d", "(d) in-process predict_proba (floor)")
    floor.floor_p50_ms, floor.floor_p99_ms = floor_p50, floor_p99
    add(floor)

    if not args.skip_peers:
        add(mlserver_row(base_env, model_path, features, expected, duration, n))
        add(bentoml_row(base_env, model_path, features, expected, duration, n))

    r = ratios(by_key, rounds)
    print()
    print(
        f"Serving benchmark, model {model_key}, {started:%Y-%m-%d}, {os.cpu_count()} cores, "
        "one worker per "
        f"server, wrk -t1, {duration:g} s per run; throughput counts 2xx answers only"
    )
    load1, load5, _ = os.getloadavg()
    print(
        f"relevo {source()}; load average {load1:.2f} / {load5:.2f} (1 / 5 min) at the end: "
        "other work on the machine skews absolute figures, compare ratios"
    )
    print(table(rows, n))
    print()
    print_ratios(r, n)
    if args.strategies:
        r.update(strategy_ratios(by_key, rounds))
        print_strategy_ratios(r, n)
    if log_check:
        print(
            f"log complete: {log_check['logged']} of {log_check['answered_2xx_seen_by_wrk']}"
            + ("" if log_check["complete"] else "  <-- ROWS MISSING")
        )
    if profile.get("top_own"):
        print_profile(profile, n)

    result = {
        "model": model_key,
        "date": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "relevo_source": source(),
        "load_average_at_end": list(os.getloadavg()),
        "duration_s": duration,
        "connections": n,
        "warmup_s": WARMUP_S,
        "thread_env": THREAD_ENV,
        "compiled": compiled[1] if compiled else None,
        "rows": [x.to_dict() for x in rows],
        "ratios": r,
        "log_check": log_check,
        "ab_rounds_ok_per_s": rounds,
        "profile": {k: v for k, v in profile.items() if k != "load"},
    }
    result["failed"] = bool(log_check and not log_check["complete"])
    return result


def mlserver_row(
    base_env: dict[str, str],
    model_path: Path,
    features: dict[str, Any],
    expected: float,
    duration: float,
    n: int,
) -> Row:
    label = "(e) MLServer 1.7 + sklearn, V2"
    try:
        venv = peer_venv("mlserver", MLSERVER_PINS)
    except (BenchError, subprocess.SubprocessError, OSError) as exc:
        return Row("e", label, note=f"n/a: peer install failed: {str(exc).splitlines()[0]}")
    root = WORK / "mlserver"
    if root.exists():
        shutil.rmtree(root)
    (root / "churn").mkdir(parents=True)
    shutil.copy(model_path, root / "churn" / "model.joblib")
    port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    # a single process: the worker pool (parallel_workers > 0) dies at start on this machine
    settings = {
        "debug": False,
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "parallel_workers": 0,
    }
    (root / "settings.json").write_text(json.dumps(settings, indent=2))
    model_settings = {
        "name": MODEL_NAME,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "v1"},
    }
    (root / "churn" / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    # V2 with one input per column, decoded by the pandas codec; strings as BYTES marked "str"
    inputs = []
    for name, value in features.items():
        if isinstance(value, str):
            inputs.append(
                {
                    "name": name,
                    "shape": [1],
                    "datatype": "BYTES",
                    "data": [value],
                    "parameters": {"content_type": "str"},
                }
            )
        elif isinstance(value, int):
            inputs.append({"name": name, "shape": [1], "datatype": "INT64", "data": [value]})
        else:
            inputs.append({"name": name, "shape": [1], "datatype": "FP64", "data": [value]})
    body = {
        "parameters": {"content_type": "pd"},
        "inputs": inputs,
        "outputs": [{"name": "predict_proba"}],
    }

    def probability(ans: Any) -> float:
        out = next(o for o in ans["outputs"] if o["name"] == "predict_proba")
        return float(out["data"][1])

    base = f"http://127.0.0.1:{port}"
    return measure(
        Server(
            "e",
            label,
            [str(venv / "bin" / "mlserver"), "start", str(root)],
            {**base_env, "PATH": f"{venv / 'bin'}:{base_env.get('PATH', '')}"},
            f"{base}/v2/models/{MODEL_NAME}/ready",
            f"{base}/v2/models/{MODEL_NAME}/infer",
            body,
            probability,
            cwd=root,
        ),
        expected,
        duration,
        n,
    )


def bentoml_row(
    base_env: dict[str, str],
    model_path: Path,
    features: dict[str, Any],
    expected: float,
    duration: float,
    n: int,
) -> Row:
    label = "(f) BentoML 1.4, workers=1"
    try:
        venv = peer_venv("bentoml", BENTOML_PINS)
    except (BenchError, subprocess.SubprocessError, OSError) as exc:
        return Row("f", label, note=f"n/a: peer install failed: {str(exc).splitlines()[0]}")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **base_env,
        "PATH": f"{venv / 'bin'}:{base_env.get('PATH', '')}",
        "BENCH_MODEL_PATH": str(model_path),
        "BENTOML_HOME": str(WORK / "bentoml-home"),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    return measure(
        Server(
            "f",
            label,
            [
                str(venv / "bin" / "bentoml"),
                "serve",
                "bentoml_service:Churn",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env,
            f"{base}/readyz",
            f"{base}/predict",
            {"rows": [features]},
            lambda ans: float(ans[0]),
            cwd=APPS,
        ),
        expected,
        duration,
        n,
    )


if __name__ == "__main__":
    sys.exit(main())
