"""Batch-scoring benchmark: `relevo predict` against a plain pandas pass, time and peak memory.

Run by hand, never part of the test suite (at full size it takes minutes and a few GB of disk):

    .venv/bin/python benchmarks/batch.py [--rows 1000000] [--formats csv,parquet]
                                         [--chunk-rows 50000]

A table of `--rows` rows x 12 columns (8 numeric, 4 categorical) is written as CSV and Parquet;
a ColumnTransformer (StandardScaler + OneHotEncoder) + gradient boosting pipeline is fitted on
a sample and registered with relevo. Each run is a process of its own, one after the other:

  plain           pandas read_csv / read_parquet + predict_proba + to_parquet, whole file
  relevo log off  `relevo predict NAME --input FILE --output out.parquet`, log off
  relevo log on   the same with the prediction log on (SQLite under a temporary home)

Peak memory and CPU time (user + system, all threads) are each run's own (`os.wait4`), so runs
do not mask one another; with the log on they include the log's writer process (a child of
relevo's: CPU summed, the peak the larger of the two). On a shared machine CPU time is the
steadier figure. Goals
(issue 13): within 1.5x of the plain pass with the log off, 2.5x with it on,
memory flat as the file grows (compare two `--rows` sizes: relevo's peak should barely move).
"""

from __future__ import annotations

import os

THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
os.environ.update(THREAD_ENV)

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
NUMERIC = [f"n{i}" for i in range(8)]
CATEGORICAL = [f"c{i}" for i in range(4)]
PLAIN = """
import sys, joblib, pandas as pd
model = joblib.load(sys.argv[1])
src = sys.argv[2]
frame = pd.read_csv(src) if src.endswith(".csv") else pd.read_parquet(src)
proba = model.predict_proba(frame[{columns!r}])[:, 1]
frame.assign(probability=proba).to_parquet(sys.argv[3], index=False)
"""


def make_data(rows: int, seed: int = 0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    data = {name: rng.normal(size=rows) for name in NUMERIC}
    for k, name in enumerate(CATEGORICAL):
        levels = np.array([f"{name}_{v}" for v in range(3 + 2 * k)], dtype=object)
        data[name] = levels[rng.integers(0, len(levels), size=rows)]
    frame = pd.DataFrame(data)
    score = frame[NUMERIC[:4]].sum(axis=1) + (frame["c0"] == "c0_1") * 1.5
    frame["target"] = (score + rng.normal(size=rows) > 0).astype(int)
    return frame


def fit(workdir: Path) -> tuple[Path, Path]:
    import joblib
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    train = make_data(20_000, seed=1)
    pipeline = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), NUMERIC),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
                    ],
                    sparse_threshold=0.0,
                ),
            ),
            ("gb", HistGradientBoostingClassifier(max_iter=100)),
        ]
    )
    pipeline.fit(train[NUMERIC + CATEGORICAL], train["target"])
    model_path = workdir / "model.joblib"
    joblib.dump(pipeline, model_path)
    reference = workdir / "reference.csv"
    train.to_csv(reference, index=False)
    return model_path, reference


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Run `argv`; (seconds, CPU seconds and peak RSS in MB of that process alone)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"failed: {' '.join(argv)}\n{err[-2000:]}")
    return took, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows in the input file")
    ap.add_argument("--formats", default="csv,parquet", help="input formats to run")
    ap.add_argument("--chunk-rows", type=int, default=None, help="relevo's chunk size")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="relevo-batch-bench-"))
    try:
        return run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> int:
    env = {**os.environ, **THREAD_ENV, "RELEVO_HOME": str(work / "home")}
    env.pop("RELEVO_DATABASE_URL", None)
    print(f"[setup] fitting the pipeline, writing {args.rows:,} rows x 12 columns", flush=True)
    model_path, reference = fit(work)
    data = make_data(args.rows, seed=2).drop(columns="target")
    inputs = {}
    for fmt in args.formats.split(","):
        path = work / f"input.{fmt}"
        data.to_csv(path, index=False) if fmt == "csv" else data.to_parquet(path, index=False)
        inputs[fmt] = path
    del data
    relevo = str(BIN / "relevo")
    register = [relevo, "models", "register", "gb", str(model_path)]
    subprocess.run(
        [*register, "--reference", str(reference), "--target", "target"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run([relevo, "deploy", "gb", "gb:1"], env=env, check=True, stdout=subprocess.DEVNULL)
    if args.chunk_rows:
        env["RELEVO_BATCH_CHUNK_ROWS"] = str(args.chunk_rows)
    plain = PLAIN.format(columns=NUMERIC + CATEGORICAL)
    results = []
    for fmt, path in inputs.items():
        out = work / "out.parquet"
        runs = {
            "plain pandas": (
                [sys.executable, "-c", plain, str(model_path), str(path), str(out)],
                env,
            ),
            "relevo log off": (
                [relevo, "predict", "gb", "--input", str(path), "--output", str(out)],
                {**env, "RELEVO_LOG_PREDICTIONS": "false"},
            ),
            "relevo log on": (
                [relevo, "predict", "gb", "--input", str(path), "--output", str(out)],
                {**env, "RELEVO_LOG_PREDICTIONS": "true"},
            ),
        }
        base = None
        for label, (argv, run_env) in runs.items():
            took, cpu, peak = timed(argv, run_env)
            base = base or took
            results.append(
                {
                    "format": fmt,
                    "run": label,
                    "seconds": took,
                    "cpu_seconds": cpu,
                    "peak_mb": peak,
                    "vs_plain": took / base,
                }
            )
            print(
                f"[{fmt}] {label}: {took:.2f} s ({took / base:.2f}x plain), CPU {cpu:.2f} s, "
                f"peak {peak:,.0f} MB",
                flush=True,
            )
            out.unlink(missing_ok=True)
    print()
    print(
        f"Batch scoring, {args.rows:,} rows x 12 columns, {os.cpu_count()} cores; "
        f"load average {os.getloadavg()[0]:.2f} at the end (compare ratios)"
    )
    print("| input | run | time s | vs plain | CPU s | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['format']} | {r['run']} | {r['seconds']:.2f} | {r['vs_plain']:.2f}x | "
            f"{r['cpu_seconds']:.2f} | {r['peak_mb']:,.0f} |"
        )
    (HERE / ".work").mkdir(exist_ok=True)
    (HERE / ".work" / "batch-results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
