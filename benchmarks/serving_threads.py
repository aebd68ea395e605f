"""Where a relevo server's CPU goes, thread by thread: variants side by side, interleaved.

Run by hand, never part of the test suite (it takes minutes and needs `wrk`):

    .venv/bin/python benchmarks/serving_threads.py [--model cheap|churn] [--rounds 6]
        [--duration 5] [--connections 32] [--compile onnx] VARIANT [VARIANT ...]

A VARIANT is a deployment shape, optionally with one environment variable of its server and
another source tree, `SHAPE[#VAR=VALUE][@PYTHONPATH]`:

  basic       MODEL:1 alone                       canary      keyed canary at 0.1 (MODEL:2)
  basic_key   MODEL:1, routing key customer_id    canary0     keyed canary at 0.0001
  shadow      MODEL:2 a shadow, mirror 1.0        canary5     keyed canary at 0.5

for example `basic "basic#RELEVO_LOG_PREDICTIONS=false"` (the log's cost) or
`canary canary@/path/to/other/checkout/src` (two versions of relevo). Every variant gets its own
RELEVO_HOME and `relevo serve --workers 1` (the rollout evaluator off, as in
`benchmarks/serving.py`); all stay up together and are loaded with `wrk -t1` in `--rounds`
interleaved rounds (v1 v2 ..., ... v2 v1). Around each run the CPU time of every thread of the
server and of its children (the log writer process) is read from /proc/PID/task/TID/stat, and
the threads are named from `py-spy dump` when py-spy is installed (otherwise by their OS
names). Printed: per variant, the medians of CPU per request (in total and per thread group),
2xx/s, p50 and p99, and each variant's CPU per request over the first's. CPU time per request
holds far better than requests/s on a machine whose speed drifts (see docs/performance.md).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import argparse
import json
import re
import shutil
import statistics
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import serving as sb

SHAPES: dict[str, list[str] | None] = {
    "basic": None,
    "basic_key": ["--key", "customer_id"],
    "canary": ["--strategy", "canary", "--weight", "0.1", "--key", "customer_id"],
    "canary0": ["--strategy", "canary", "--weight", "0.0001", "--key", "customer_id"],
    "canary5": ["--strategy", "canary", "--weight", "0.5", "--key", "customer_id"],
    "shadow": ["--strategy", "shadow", "--mirror", "1.0"],
}
CHALLENGED = ("canary", "shadow")


def parse_variant(spec: str) -> tuple[str, dict[str, str], str | None]:
    """(shape, extra environment, PYTHONPATH or None) of `SHAPE[#VAR=VALUE][@PYTHONPATH]`."""
    head, _, tree = spec.partition("@")
    shape, _, assignment = head.partition("#")
    if shape not in SHAPES:
        raise SystemExit(f"unknown shape {shape!r} in {spec!r}: use one of {', '.join(SHAPES)}")
    env: dict[str, str] = {}
    if assignment:
        name, sep, value = assignment.partition("=")
        if not sep or not name:
            raise SystemExit(f"{spec!r}: write the variable as #NAME=VALUE")
        env[name] = value
    return shape, env, tree or None


def thread_names(pid: int) -> dict[str, str]:
    """Thread id -> Python thread name, from `py-spy dump` (empty without py-spy)."""
    spy = shutil.which("py-spy")
    if spy is None:
        return {}
    done = subprocess.run(
        [spy, "dump", "--pid", str(pid), "--subprocesses"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return dict(re.findall(r'Thread (\d+) \([^)]*\): "([^"]+)"', done.stdout))


def thread_cpu(pid: int, names: dict[str, str]) -> dict[str, float]:
    """CPU seconds (user + system) per thread of `pid` and of its children, by thread name
    (a child's threads prefixed "writer:"), summed over threads of one name."""
    tick = os.sysconf("SC_CLK_TCK")
    children: list[int] = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                children += [int(x) for x in f.read().split()]
        except FileNotFoundError:
            pass
    out: dict[str, float] = defaultdict(float)
    for proc in [pid, *children]:
        for tid in os.listdir(f"/proc/{proc}/task"):
            try:
                with open(f"/proc/{proc}/task/{tid}/stat") as f:
                    stat = f.read()
            except FileNotFoundError:
                continue  # the thread ended meanwhile
            name = names.get(tid) or stat[stat.index("(") + 1 : stat.rindex(")")]
            name = re.sub(r"[_-]?\d+$", "", name)  # worker_0, worker_1 -> one group
            fields = stat[stat.rindex(")") + 2 :].split()
            key = name if proc == pid else f"writer:{name}"
            out[key] += (int(fields[11]) + int(fields[12])) / tick
    return out


def model_calls(health_url: str) -> str:
    """Per model, the calls made and rows per call so far (relevo_model_batch_rows), from the
    server's /metrics: what a challenger's share of model calls costs."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    with urlopen(health_url.replace("/readyz", "/metrics"), timeout=10) as answer:
        text = answer.read().decode()
    calls: dict[str, float] = defaultdict(float)
    rows: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        if family.name != "relevo_model_batch_rows":
            continue
        for sample in family.samples:
            model = sample.labels.get("model", "?")
            if sample.name.endswith("_count"):
                calls[model] += sample.value
            elif sample.name.endswith("_sum"):
                rows[model] += sample.value
    return ", ".join(
        f"{m}: {calls[m]:,.0f} calls, {rows[m] / calls[m]:.1f} rows/call"
        for m in sorted(calls)
        if calls[m]
    )


def start_variant(
    spec: str,
    home: Path,
    model_key: str,
    paths: tuple[Path, Path],
    row: dict[str, Any],
    base_env: dict[str, str],
    compiled: list[str],
) -> tuple[sb.Running, dict[str, str]]:
    shape, extra, tree = parse_variant(spec)
    workdir = home / re.sub(r"[^A-Za-z0-9]+", "_", spec)
    workdir.mkdir()
    env = {**base_env, "RELEVO_HOME": str(workdir)}
    if tree:  # the store is made by the tree that serves it (its migrations)
        env["PYTHONPATH"] = tree
    model_path, train_path = paths
    target = "churned" if model_key == "churn" else "target"
    challenged = shape.startswith(CHALLENGED)
    register = ["models", "register", model_key, str(model_path), "--reference", str(train_path)]
    for _ in range(2 if challenged else 1):
        sb.relevo_cli([*register, "--target", target, *compiled], env)
    options = SHAPES[shape] or []
    if challenged:
        sb.relevo_cli(["deploy", model_key, f"{model_key}:1"], env)
        sb.relevo_cli(["deploy", model_key, f"{model_key}:2", *options], env)
    else:
        sb.relevo_cli(["deploy", model_key, f"{model_key}:1", *options], env)
    env.update(extra)
    # a new key on every request (as `benchmarks/serving.py` sends its canary), or a keyed
    # canary would send the one fixed row's key to the same model every time
    keyed = "--key" in options
    body = {"instances": [{**row, "customer_id": "__KEY__"} if keyed else row]}
    server = sb.relevo_server(re.sub(r"[^A-Za-z0-9]+", "_", spec), spec, env, body["instances"][0])
    running = sb.Running(server, 0.0)
    running.body_file.write_bytes(json.dumps(body).encode())
    running.proc, log_path = sb.start_server(server.key, server.argv, env, None)
    sb.wait_ready(running.proc, server.health_url, log_path)
    return running, thread_names(running.proc.pid)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", nargs="+", help="SHAPE[#VAR=VALUE][@PYTHONPATH]")
    ap.add_argument("--model", choices=["cheap", "churn"], default="cheap")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--compile", choices=["onnx"], default=None)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: `apt-get install -y wrk`, then rerun.")
        return 2
    sb.WORK.mkdir(parents=True, exist_ok=True)
    sb.MODEL_NAME = args.model
    home = Path(tempfile.mkdtemp(prefix="relevo-threads-"))
    model_path, train_path, row = sb.train(home, args.model)
    base_env = {**os.environ, **sb.THREAD_ENV, "PYTHONUNBUFFERED": "1"}
    base_env["RELEVO_ROLLOUT_EVAL_INTERVAL_S"] = "0"
    for var in ("PROMETHEUS_MULTIPROC_DIR", "RELEVO_DATABASE_URL", "PYTHONPATH"):
        base_env.pop(var, None)
    compiled = ["--compile", args.compile] if args.compile and args.model == "cheap" else []
    servers: dict[str, tuple[sb.Running, dict[str, str]]] = {}
    results: dict[str, dict[str, list[float]]] = {v: defaultdict(list) for v in args.variants}
    n = args.connections
    try:
        for spec in args.variants:
            running, names = start_variant(
                spec, home, args.model, (model_path, train_path), row, base_env, compiled
            )
            servers[spec] = (running, names)
            running.load(n, sb.WARMUP_S, show=False)
        for i in range(args.rounds):
            for spec in args.variants if i % 2 == 0 else args.variants[::-1]:
                running, names = servers[spec]
                assert running.proc is not None
                before = thread_cpu(running.proc.pid, names)
                x = sb.run_wrk(running.server.predict_url, running.body_file, n, args.duration)
                after = thread_cpu(running.proc.pid, names)
                if x.non2xx or x.socket_errors or not x.requests:
                    raise SystemExit(f"{spec}: {x.non2xx} non-2xx, {x.socket_errors} errors")
                per = {k: (after[k] - before.get(k, 0.0)) / x.requests * 1e6 for k in after}
                got = results[spec]
                got["cpu_us"].append(sum(per.values()))
                got["ok_per_s"].append(x.ok_per_s)
                got["p50_ms"].append(x.p50_ms)
                got["p99_ms"].append(x.p99_ms)
                for name, us in per.items():
                    got[f"thread:{name}"].append(us)
                print(
                    f"round {i} {spec}: {sum(per.values()):.0f} us/request, "
                    f"{x.ok_per_s:,.0f} 2xx/s, p50 {x.p50_ms:.2f} ms",
                    flush=True,
                )
        for spec, (running, _) in servers.items():
            print(f"{spec} model calls: {model_calls(running.server.health_url)}")
    finally:
        for running, _ in servers.values():
            if running.proc is not None:
                sb.stop_server(running.proc)
    print(
        f"\nmodel {args.model}{' (compiled)' if compiled else ''}, c={n}, {args.rounds} rounds "
        f"of {args.duration:g} s; medians; CPU per request by thread (us), >= 3 us shown"
    )
    first = statistics.median(results[args.variants[0]]["cpu_us"])
    for spec in args.variants:
        got = results[spec]
        med = {k: statistics.median(v) for k, v in got.items()}
        threads = sorted(
            ((k.removeprefix("thread:"), v) for k, v in med.items() if k.startswith("thread:")),
            key=lambda kv: -kv[1],
        )
        shown = ", ".join(f"{k} {v:.0f}" for k, v in threads if v >= 3)
        print(
            f"{spec}: {med['cpu_us']:.0f} us/request ({med['cpu_us'] / first:.2f}x the first), "
            f"{med['ok_per_s']:,.0f} 2xx/s, p50 {med['p50_ms']:.2f} ms, "
            f"p99 {med['p99_ms']:.2f} ms | {shown}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
