"""Prediction-log writer benchmark: the writer process's CPU time per logged row.

Run by hand, never part of the test suite (a few minutes):

    .venv/bin/python benchmarks/log_writer.py [--rows 200000] [--shapes single,serving,batch]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]
        [--trees main=/work/main/src,branch=src] [--rounds 2] [--py-spy /path/to/py-spy]

The log's writer process (`relevo.serving.log_writer`) is fed serialised entries exactly as the
server's writer thread hands them over (batches of up to `RELEVO_LOG_FLUSH_ROWS` rows through
`RemoteWriter.write`): it turns them into rows, inserts them and profiles them. Shapes:

  single   one-row entries (a lone request: c=1), 30 numeric features (the serving
           benchmark's cheap model)
  serving  entries of 1-32 rows (the requests of a micro-batch, one latency per row), the
           same 30 features
  batch    entries of 50,000 rows (`relevo predict`), 8 numeric and 4 categorical features

Each run is a process of its own on a fresh store (a SQLite file, or a PostgreSQL schema of its
own), with the model registered (so the profiles are built against its reference). After two
small warm-up writes (imports, the reference) the writer process's CPU time (user + system, all
threads, from /proc) is read; the timed entries are written, the log is closed (profiles
stored) and the process reaped, its total from `getrusage(RUSAGE_CHILDREN)`. The figure is
(total - warm-up) / rows: CPU seconds per row, which a busy machine barely moves. Every run
checks that every row is stored and profiled. With `--trees`, each named source tree (its `src`
on PYTHONPATH) is run in turn, round after round, for a side-by-side comparison in one run.
`--py-spy` samples the writer process of one run per shape (collapsed stacks under
benchmarks/.work/). Results: stdout and benchmarks/.work/log-writer-results.json.
"""

from __future__ import annotations

import os

os.environ.update({"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SHAPES = ("single", "serving", "batch")
#: rows per batch handed to the writer process: what the server's writer thread finds queued
#: every RELEVO_LOG_FLUSH_INTERVAL_S (0.2 s) at 7,000 requests/s (a batch-scoring entry of
#: 50,000 rows is always a batch of its own)
WRITE_ROWS = 1_400
BATCH_ROWS = 50_000  # rows per entry of batch scoring (its default chunk)
CHEAP = [f"x{i:02d}" for i in range(30)]
NUMERIC = [f"n{i}" for i in range(8)]
CATEGORICAL = [f"c{i}" for i in range(4)]


# ---- one measured run (a process of its own, with one source tree on its path) -----------


def _model(shape: str) -> tuple[Any, Any, str]:
    """A small fitted model, its reference frame and its name, as the shape's entries need."""
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    if shape == "batch":
        data = pd.DataFrame({n: rng.normal(size=2000) for n in NUMERIC})
        for k, name in enumerate(CATEGORICAL):
            data[name] = [f"{name}_{v}" for v in rng.integers(0, 3 + 2 * k, size=2000)]
        pre = ColumnTransformer(
            [("num", StandardScaler(), NUMERIC), ("cat", OneHotEncoder(), CATEGORICAL)]
        )
        model = make_pipeline(pre, LogisticRegression(max_iter=500))
        name = "gb"
    else:
        data = pd.DataFrame(rng.normal(size=(2000, len(CHEAP))), columns=CHEAP)
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
        name = "cheap"
    data["target"] = (data[NUMERIC[0] if shape == "batch" else CHEAP[0]] > 0).astype(int)
    model.fit(data.drop(columns="target"), data["target"])
    return model, data, name


def _entries(shape: str, rows: int, name: str, seed: int, size: int = 0) -> list[Any]:
    """`rows` rows of log entries of `shape`, as the server (or batch scoring) makes them
    (`size` rows each if set)."""
    from dataclasses import fields

    import numpy as np

    from relevo.serving.entries import LogEntry
    from relevo.serving.ids import new_ids

    # a tree whose server hands its number columns over as a block (the server's matrix)
    blocks = "numbers" in {f.name for f in fields(LogEntry)}
    rng = np.random.default_rng(seed)
    now = time.time()
    entries = []
    done = 0
    sizes = {"single": lambda: 1, "serving": lambda: int(rng.integers(1, 33))}
    while done < rows:
        n = min(rows - done, size or (BATCH_ROWS if shape == "batch" else sizes[shape]()))
        probs = rng.random(n).tolist()
        outputs = [{"probability": p, "label": int(p >= 0.5)} for p in probs]
        if shape == "batch":
            numeric, values = NUMERIC, rng.normal(size=(len(NUMERIC), n))
            features: dict[str, list[Any]] = {c: values[j].tolist() for j, c in enumerate(NUMERIC)}
            for k, c in enumerate(CATEGORICAL):
                features[c] = [f"{c}_{v}" for v in rng.integers(0, 3 + 2 * k, size=n).tolist()]
            latency: Any = 812.5
        else:
            numeric, values = CHEAP, rng.normal(size=(len(CHEAP), n))
            features = {c: values[j].tolist() for j, c in enumerate(CHEAP)}
            latency = 1.25 if n == 1 else (rng.random(n) * 3).tolist()
        # as the server does: only an all-numeric model's entries carry the block
        block = (tuple(numeric), values.T.copy()) if blocks and shape != "batch" else ()
        entries.append(
            LogEntry("dep", name, 1, now, new_ids(n), features, outputs, latency, None,
                     "champion", *block)
        )  # fmt: skip
        done += n
    return entries


def _batches(payloads: list[tuple[bytes, int]]) -> list[list[bytes]]:
    """Payloads grouped as the log's writer thread groups its queue: up to WRITE_ROWS rows."""
    out: list[list[bytes]] = []
    batch: list[bytes] = []
    rows = 0
    for payload, n in payloads:
        if batch and rows + n > WRITE_ROWS:
            out.append(batch)
            batch, rows = [], 0
        batch.append(payload)
        rows += n
    if batch:
        out.append(batch)
    return out


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    shape: str, rows: int, url: str, rate: float, py_spy: str | None, flame: Path | None
) -> dict:
    """One run: the writer process's CPU seconds per row for `rows` rows of `shape`."""
    from datetime import UTC, datetime, timedelta

    import relevo
    from relevo.serving.entries import encode
    from relevo.serving.log_writer import RemoteWriter, WriterConfig

    home = Path(tempfile.mkdtemp(prefix="relevo-writer-bench-"))
    handle = relevo.Relevo(home=home, database_url=url)
    try:
        model, data, name = _model(shape)
        handle.registry.register(name, model, data, target="target")
        warm_rows = 40
        warm = [
            encode(e) for e in _entries(shape, warm_rows, name, 1, 1 if shape == "single" else 2)
        ]
        timed = [(encode(e), e.n) for e in _entries(shape, rows, name, seed=2)]
        batches = _batches(timed)
        remote = RemoteWriter(
            WriterConfig(database_url=handle.store.url, dead_letter=None, profiles=True)
        )
        before = _children_cpu()
        remote.write(warm[: len(warm) // 2])
        time.sleep(1.1)  # the profiler takes what waited a second: the reference is loaded
        remote.write(warm[len(warm) // 2 :])
        time.sleep(0.3)
        assert remote._proc is not None
        pid = remote._proc.pid
        warm_cpu = _proc_cpu(pid)
        spy = None
        if py_spy is not None and flame is not None:
            spy = subprocess.Popen(
                [py_spy, "record", "--pid", str(pid), "--threads", "--rate", "250",
                 "--format", "raw", "--output", str(flame), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(1.0)
        started = time.perf_counter()
        stored = 0
        for k, batch in enumerate(batches):
            if rate and shape != "batch":  # the server's pace: a batch every flush interval
                time.sleep(max(0.0, started + k * WRITE_ROWS / rate - time.perf_counter()))
            stored += remote.write(batch)[0]
        remote.close()
        wall = time.perf_counter() - started
        if spy is not None:
            spy.wait(timeout=60)
        total = _children_cpu() - before
        count = handle.store.predictions.count()
        now = datetime.now(UTC)
        profiled = sum(
            r.rows
            for r in handle.store.profiles.fetch(
                "dep", now - timedelta(hours=1), now + timedelta(hours=1)
            )
        )
        if stored != rows or count != rows + warm_rows or profiled != rows + warm_rows:
            raise SystemExit(
                f"rows lost: {rows} sent, {stored} acknowledged, {count} stored, "
                f"{profiled} profiled ({warm_rows} warm-up rows)"
            )
        cpu = total - warm_cpu
        return {
            "shape": shape,
            "rows": rows,
            "entries": len(timed),
            "cpu_s": cpu,
            "us_per_row": cpu / rows * 1e6,
            "wall_s": wall,
        }
    finally:
        handle.close()
        shutil.rmtree(home, ignore_errors=True)


# ---- the driver ---------------------------------------------------------------------------


def _fresh_postgres(url: str) -> tuple[str, Any]:
    """A schema of its own on the PostgreSQL server of `url`; returns its URL and a dropper."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    schema = f"relevo_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    return scoped.render_as_string(hide_password=False), drop


def _run_child(tree: Path, shape: str, rows: int, url: str, rate: float, spy: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    for key in [k for k in env if k.startswith("RELEVO_")]:
        env.pop(key)
    argv = [sys.executable, __file__, "--child", shape, "--rows", str(rows), "--url", url]
    argv += ["--rate", str(rate), *spy]
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the run failed ({tree}, {shape}):\n{done.stderr[-3000:]}")
    result: dict = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000, help="timed rows per run")
    ap.add_argument("--shapes", default=",".join(SHAPES), help="entry shapes to run")
    ap.add_argument("--postgres", default=None, help="also run on this PostgreSQL URL")
    ap.add_argument("--trees", default=f"this={HERE.parent / 'src'}", help="name=src,...")
    ap.add_argument(
        "--rate", type=float, default=7_000.0, help="rows/s fed to the writer (0: flat out)"
    )
    ap.add_argument("--rounds", type=int, default=1, help="runs per tree, shape and store")
    ap.add_argument("--py-spy", default=None, help="sample one run per shape with this py-spy")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--url", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--flame", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        flame = Path(args.flame) if args.flame else None
        result = measure(args.child, args.rows, args.url, args.rate, args.py_spy, flame)
        print(json.dumps(result))
        return 0

    trees = [(n, Path(p).resolve()) for n, p in (t.split("=", 1) for t in args.trees.split(","))]
    stores = ["sqlite"] + (["postgresql"] if args.postgres else [])
    work = HERE / ".work"
    work.mkdir(exist_ok=True)
    results = []
    for store in stores:
        for shape in args.shapes.split(","):
            for k in range(args.rounds):
                for name, tree in trees:
                    tmp = Path(tempfile.mkdtemp(prefix="relevo-writer-db-"))
                    drop = None
                    if store == "sqlite":
                        url = f"sqlite:///{tmp / 'relevo.db'}"
                    else:
                        url, drop = _fresh_postgres(args.postgres)
                    spy: list[str] = []
                    if args.py_spy and k == 0:
                        flame = work / f"log-writer-{name}-{store}-{shape}.txt"
                        spy = ["--py-spy", args.py_spy, "--flame", str(flame)]
                    try:
                        r = _run_child(tree, shape, args.rows, url, args.rate, spy)
                    finally:
                        if drop is not None:
                            drop()
                        shutil.rmtree(tmp, ignore_errors=True)
                    r.update(tree=name, store=store, round=k, load=os.getloadavg()[0])
                    results.append(r)
                    print(
                        f"[{store} {shape} {name} #{k}] {r['us_per_row']:.2f} us/row CPU "
                        f"({r['cpu_s']:.2f} s for {r['rows']:,} rows in {r['entries']:,} "
                        f"entries, {r['wall_s']:.2f} s wall), load {r['load']:.2f}",
                        flush=True,
                    )
    print()
    print(f"Writer process CPU per row, {args.rows:,} rows per run, {os.cpu_count()} cores")
    names = [n for n, _ in trees]
    print("| store | shape | " + " | ".join(f"{n} us/row" for n in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for store in stores:
        for shape in args.shapes.split(","):
            cells = []
            for n in names:
                got = [
                    r["us_per_row"]
                    for r in results
                    if r["store"] == store and r["shape"] == shape and r["tree"] == n
                ]
                cells.append(f"{statistics.median(got):.2f}" if got else "-")
            print(f"| {store} | {shape} | " + " | ".join(cells) + " |")
    (work / "log-writer-results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
