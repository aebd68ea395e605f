"""Drift benchmark: `relevo.drift` against Evidently's data drift preset, from the raw frames.

Run by hand, never part of the test suite (Evidently takes about two minutes):

    .venv/bin/python benchmarks/drift.py [--rows 1000000] [--skip-evidently]
                                         [--categorical category|object|str]

Both tools get the same two DataFrames of `--rows` rows x 25 columns (20 numeric of several
shapes, 5 categorical), generated from one seed inside each run's own process, the categorical
columns as `--categorical` says (default `category`: the same codes in both processes; `object`
is the same in both too; `str` gives each its pandas' default, Arrow strings in relevo's pandas
3 and objects in Evidently's pandas 2, as earlier versions of this benchmark did): the current
frame drifts in five known columns (n0 shifted by 0.3 standard deviations, n1 spread 1.5x,
n2 scaled 1.3x on a log-normal, c0's shares moved, c1 with a new category in 15 % of rows);
the other twenty do not. Each tool runs in a process of its own, one after the other, and
reports the time of the drift call alone (profiling and tests, not the data generation or the
imports), its peak resident memory during the call (Linux: once the data is generated, what
the generation freed is handed back to the system (pyarrow's pool, `malloc_trim`) and the peak
is reset, `/proc/self/clear_refs`, then read as `VmHWM`; elsewhere `ru_maxrss`), which includes
the frames both hold (also reported on their own) and the libraries loaded, and the columns it
flags.

Evidently lives only in this benchmark's own virtual environment under benchmarks/.work/
(git-ignored), made on first use: `python3 -m venv` + `pip install "evidently==0.7.*"
"pandas<3"` (Evidently 0.7 needs pandas < 3). Goal (issue 15): relevo at least 80x faster and
at most a quarter of Evidently's peak memory, flagging the same columns.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work"
VENV = WORK / "evidently-venv"
NUMERIC = [f"n{i}" for i in range(20)]
CATEGORICAL = [f"c{i}" for i in range(5)]
DRIFTED = ["n0", "n1", "n2", "c0", "c1"]

# The child: generate the frames, then time one drift call. Runs under either interpreter.
CHILD = r'''
import json, resource, sys, time
import numpy as np, pandas as pd

def frames(rows, seed=7):
    rng = np.random.default_rng(seed)
    def numeric(i, drift):
        shape = i % 4
        if shape == 0:
            x = rng.normal(50 + i, 10, rows)
            return x + (3.0 if drift and i == 0 else 0.0)
        if shape == 1:
            x = rng.normal(0, 1, rows)
            return x * (1.5 if drift and i == 1 else 1.0)
        if shape == 2:
            x = rng.lognormal(3, 0.5, rows)
            return x * (1.3 if drift and i == 2 else 1.0)
        return rng.poisson(4, rows).astype(float)
    def categorical(k, drift):
        levels = np.array([f"c{k}_{v}" for v in range(3 + 2 * k)], dtype=object)
        p = np.linspace(2, 1, levels.size); p /= p.sum()
        if drift and k == 0:
            p = p[::-1].copy()
        values = levels[rng.choice(levels.size, rows, p=p)]
        if drift and k == 1:
            values[rng.random(rows) < 0.15] = "c1_new"
        if strings == "str":  # each pandas' default: Arrow-backed in pandas 3, object in 2
            return values
        return pd.Series(values, dtype=strings)  # "category" or "object": the same in both
    out = []
    for drift in (False, True):
        data = {f"n{i}": numeric(i, drift) for i in range(20)}
        data.update({f"c{k}": categorical(k, drift) for k in range(5)})
        # copy=False: the columns as generated, without a consolidated copy of the frame, so
        # that the data's own peak stays near its size and the tools' peaks show
        out.append(pd.DataFrame(data, copy=False))
        del data
    return out

def frame_bytes(frame):
    """The frame's own memory: each column's buffers, and each distinct string object once
    (object columns hold pointers to a few shared strings)."""
    total = 0
    for name in frame.columns:
        column = frame[name]
        if column.dtype == object:
            total += column.memory_usage(index=False, deep=False)
            total += sum(sys.getsizeof(v) for v in pd.unique(column))
        else:
            total += column.memory_usage(index=False, deep=True)
    return total

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None

tool, rows, strings = sys.argv[1], int(sys.argv[2]), sys.argv[3]
reference, current = frames(rows)
frames_size = frame_bytes(reference) + frame_bytes(current)
kinds = sorted({str(reference[c].dtype) for c in reference.columns if not c.startswith("n")})
numeric = [f"n{i}" for i in range(20)]
categorical = [f"c{k}" for k in range(5)]
import ctypes, gc
gc.collect()
# memory the data generation freed but the allocators kept (Arrow's pool, in which pandas 3
# builds string columns; glibc's heap) goes back to the system, in both processes, so the
# resident memory before the call is the frames and the libraries
try:
    import pyarrow
    pyarrow.default_memory_pool().release_unused()
except ImportError:
    pass
try:
    ctypes.CDLL("libc.so.6").malloc_trim(0)
except OSError:
    pass
try:
    # Linux: reset the peak resident set to what is resident now (the data), so the peak
    # measured is the drift run's, not the data generation's
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    rss_data = status("VmRSS")
except OSError:
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
if tool == "relevo":
    import relevo
    drift = relevo.drift  # the import, not the work: outside the timing as for Evidently
    started = time.perf_counter()
    report = drift(reference, current)
    seconds = time.perf_counter() - started
    flagged = report.drifted_features
    methods = sorted({f.method for f in report.features})
    version = relevo.__version__
else:
    import evidently
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset
    started = time.perf_counter()
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    result = snapshot.dict()
    seconds = time.perf_counter() - started
    flagged, methods = [], set()
    for metric in result["metrics"]:
        config = metric["config"]
        if "column" not in config:
            continue
        methods.add(config["method"])
        value, threshold = metric["value"], config["threshold"]
        p_value = "p_value" in config["method"]
        if (value < threshold) if p_value else (value >= threshold):
            flagged.append(config["column"])
    order = numeric + categorical
    flagged.sort(key=order.index)
    methods = sorted(methods)
    version = evidently.__version__
peak = status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"tool": tool, "version": version, "seconds": seconds, "peak": peak,
                  "data": rss_data, "frames": frames_size, "dtypes": kinds,
                  "flagged": flagged, "methods": methods}))
'''


def evidently_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        WORK.mkdir(exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        # Evidently 0.7 imports pandas internals that pandas 3 removed
        pip = [str(VENV / "bin" / "pip"), "install", "-q", "evidently==0.7.*", "pandas<3"]
        subprocess.run(pip, check=True)
    return python


def run(tool: str, rows: int, strings: str) -> dict:
    python = Path(sys.executable) if tool == "relevo" else evidently_python()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") if tool == "relevo" else ""}
    done = subprocess.run(
        [str(python), "-c", CHILD, tool, str(rows), strings],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"{tool} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument(
        "--categorical",
        choices=["category", "object", "str"],
        default="category",
        help="how both tools get the 5 categorical columns: pandas 'category' (default) or "
        "'object' dtype, the same in both processes; or 'str', each pandas' default string "
        "column (Arrow-backed in relevo's pandas 3, object in Evidently's pandas 2)",
    )
    args = parser.parse_args()
    tools = ["relevo"] if args.skip_evidently else ["relevo", "evidently"]
    results = {tool: run(tool, args.rows, args.categorical) for tool in tools}
    mb = 1024 * 1024
    print(
        f"\n{args.rows:,} x 25 against {args.rows:,} x 25 (--categorical {args.categorical}); "
        f"drifted: {', '.join(DRIFTED)}; load average {os.getloadavg()[0]:.1f}\n"
    )
    print(
        "| tool | time | peak memory | resident before the call | of it, the frames "
        "| categorical dtype | flagged | tests |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results.values():
        print(
            f"| {r['tool']} {r['version']} | {r['seconds']:.2f} s | {r['peak'] / mb:,.0f} MB "
            f"| {r['data'] / mb:,.0f} MB | {r['frames'] / mb:,.0f} MB | {', '.join(r['dtypes'])} "
            f"| {', '.join(r['flagged'])} | {', '.join(r['methods'])} |"
        )
    if "evidently" in results:
        ours, theirs = results["relevo"], results["evidently"]
        above = (ours["peak"] - ours["data"]) / max(theirs["peak"] - theirs["data"], 1)
        print(
            f"\nrelevo is {theirs['seconds'] / ours['seconds']:.0f}x faster and uses "
            f"{ours['peak'] / theirs['peak']:.1%} of Evidently's peak memory "
            f"({(ours['peak'] - ours['data']) / mb:,.0f} MB beyond what was resident before "
            f"the call against {(theirs['peak'] - theirs['data']) / mb:,.0f} MB: {above:.1%}); "
            f"what was resident in Evidently's process before its call (frames, Python, NumPy, "
            f"pandas) is itself {theirs['data'] / theirs['peak']:.1%} of its peak; same columns "
            f"flagged: {'yes' if ours['flagged'] == theirs['flagged'] else 'NO'}; "
            f"the known drifted ones: {'yes' if ours['flagged'] == DRIFTED else 'NO'}; "
            f"load average at the end {os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    main()
