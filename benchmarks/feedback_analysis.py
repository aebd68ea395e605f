"""Benchmark of the feedback analysis: worst segments, the CBPE estimate, calibration, trend.

Run by hand, never part of the test suite:

    .venv/bin/python benchmarks/feedback_analysis.py [--rows 1000000] [--numeric 14]
                                                    [--categorical 6] [--repeat 3]

A table of `--rows` rows (standard normal numeric features, five-category categorical ones)
gets errors at a 20 % rate, 50 % in one planted segment (x0 < -1 and c0 = "a"); the reference
profile is taken on the first 50,000 rows. Each step runs `--repeat` times; the table shows the
fastest and slowest wall-clock time and the CPU time of the fastest run (on a shared machine the
CPU time is the cost, the wall-clock spread is the neighbours). The planted segment should be
the first one found.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from relevo.feedback.degradation import MetricPoint, trend
from relevo.feedback.estimate import calibration, estimate_performance
from relevo.feedback.segments import worst_segments
from relevo.monitoring import DatasetProfile


def timed(repeat: int, step: Callable[[], Any]) -> tuple[float, float, float, Any]:
    """Fastest and slowest wall-clock seconds, the CPU seconds of the fastest, the result."""
    runs, result = [], None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = step()
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    fastest = min(runs)
    return fastest[0], max(runs)[0], fastest[1], result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--numeric", type=int, default=14)
    parser.add_argument("--categorical", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    n = args.rows
    columns: dict[str, Any] = {f"x{i}": rng.normal(size=n) for i in range(args.numeric)}
    for i in range(args.categorical):
        columns[f"c{i}"] = rng.choice(np.array(["a", "b", "c", "d", "e"], dtype=object), n)
    frame = pd.DataFrame(columns)
    kinds = {name: "number" if name.startswith("x") else "string" for name in frame}
    reference = DatasetProfile.reference(frame.iloc[:50_000], kinds)
    planted = ((frame["x0"] < -1) & (frame["c0"] == "a")).to_numpy()
    errors = (rng.random(n) < np.where(planted, 0.5, 0.2)).astype(float)
    loss = errors * rng.exponential(1.0, n)
    proba = rng.beta(2, 5, n)
    labels = (rng.random(n) < proba).astype(int)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    points = [
        MetricPoint(t0 + timedelta(days=i), 0.9 - 0.001 * i, 1000, 0.88 - 0.001 * i, 0.92)
        for i in range(100)
    ]

    steps: dict[str, Callable[[], Any]] = {
        "worst_segments, 0/1 errors": lambda: worst_segments(frame, errors, reference=reference),
        "worst_segments, losses": lambda: worst_segments(frame, loss, reference=reference),
        "worst_segments, 0/1 + expected": lambda: worst_segments(
            frame, errors, reference=reference, expected=np.full(n, 0.2)
        ),
        "estimate_performance (200 draws)": lambda: estimate_performance(proba),
        "calibration (200 draws)": lambda: calibration(proba, labels),
        "trend, 100 windows": lambda: trend(points, threshold=0.8, higher_is_better=True),
    }
    features = args.numeric + args.categorical
    print(f"{n:,} rows x {features} features ({args.numeric} numeric), best of {args.repeat}")
    print(f"{'step':36} {'fastest s':>10} {'slowest s':>10} {'CPU s':>6}  result")
    for name, step in steps.items():
        fastest, slowest, cpu, result = timed(args.repeat, step)
        if isinstance(result, list):
            summary = f"top: {' and '.join(result[0].conditions)}; tested {result[0].tested:,}"
        else:
            summary = type(result).__name__
        print(f"{name:36} {fastest:10.2f} {slowest:10.2f} {cpu:6.2f}  {summary}")


if __name__ == "__main__":
    main()
