"""Production profiles benchmark: a day's window read from the store, and the serving cost.

Run by hand, never part of the test suite:

    .venv/bin/python benchmarks/profiles.py [--postgres URL] [--rounds 3] [--duration 8]
                                            [--skip-window] [--skip-serving]

(1) Window: a store is filled with one day of one-minute buckets (1,440) that together hold
    10,000,000 profiled predictions of a model with 25 inputs (20 numeric, 5 categorical), each
    bucket profiled from its own generated rows; then `load_window` over the day, and the whole
    drift query (that window and its report against the reference), are timed (medians of 7,
    after one warm-up), on SQLite and, with `--postgres`, on PostgreSQL. Goal: the query under
    200 ms.
(2) Serving: `relevo serve` (one worker, the cheap 30-feature model of benchmarks/serving.py)
    with profiles on and off (RELEVO_PROFILES), loaded with `wrk -t1 -c32` in interleaved
    rounds (on off off on ...); the median of the pairs' requests/s ratio. Goal: profiles cost
    under 5 % of requests/s. After the "on" server stops, its profiles hold every answered row.
"""

from __future__ import annotations

import os

os.environ.update({"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import serving as sv  # noqa: E402  (benchmarks/serving.py: processes and wrk)

DAY = datetime(2026, 11, 29, tzinfo=UTC)
BUCKETS = 1440
TOTAL_ROWS = 10_000_000
NUMERIC = [f"n{i:02d}" for i in range(20)]
CATEGORICAL = [f"c{i}" for i in range(5)]


def _frame(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    data: dict[str, object] = {
        c: rng.normal(loc=shift + i * 0.1, scale=1 + i * 0.05, size=n)
        for i, c in enumerate(NUMERIC)
    }
    for i, c in enumerate(CATEGORICAL):
        cats = np.array([f"{c}-{k}" for k in range(3 + 2 * i)], dtype=object)
        data[c] = cats[rng.integers(0, cats.size, size=n)]
    return pd.DataFrame(data)


def fill(url: str, home: Path, distinct: int = BUCKETS) -> tuple[object, float]:
    """A store at `url` with a registered model and a day of buckets; (Relevo, seconds).
    `distinct` < 1,440 profiles that many buckets and repeats them (a faster fill; merging
    costs the same)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    import relevo
    from relevo.monitoring.buckets import BucketProfile
    from relevo.store.profiles import ProfileRow

    rng = np.random.default_rng(0)
    reference = _frame(rng, 20_000)
    target = reference[NUMERIC[:5]].sum(axis=1) + rng.normal(size=len(reference)) > 0.5
    model = Pipeline(
        [
            ("pre", ColumnTransformer(
                [("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)],
                remainder="passthrough",
            )),
            ("lr", LogisticRegression(max_iter=500)),
        ]
    )  # fmt: skip
    model.fit(reference, target.astype(int))
    rv = relevo.Relevo(home=home, database_url=url)
    version = rv.registry.register(
        "bench", model, reference.assign(y=target.astype(int)), target="y"
    )
    ref = rv.registry.reference_profile(version)
    per = TOTAL_ROWS // BUCKETS
    t0 = time.perf_counter()
    rows = []
    made: list[BucketProfile] = []
    for b in range(BUCKETS):
        n = per + (1 if b < TOTAL_ROWS % BUCKETS else 0)
        start = DAY + timedelta(minutes=b)
        if b < distinct:
            frame = _frame(rng, n, shift=0.2 * np.sin(b / BUCKETS * 2 * np.pi))
            scores = rng.beta(2, 5, size=n)
            bucket = BucketProfile.empty(
                ref, "bench", version.name, version.version, "champion", start, 60, seed=b
            ).update(frame, scores, ref)
            made.append(bucket)
        else:
            bucket = replace(made[b % distinct], start=start, rows=n)
        rows.append(
            ProfileRow(
                "bench", version.name, version.version, "champion", bucket.start, 60,
                "replica-0", bucket.rows, orjson.dumps(bucket.to_dict()).decode(),
            )
        )  # fmt: skip
        if len(rows) == 120:
            rv.store.profiles.upsert(rows)
            rows = []
    rv.store.profiles.upsert(rows)
    return rv, time.perf_counter() - t0


def time_window(rv: object, label: str) -> dict[str, float]:
    """`load_window` over the day, and the whole drift query: that window's report against
    the reference (what `relevo drift` and GET /v1/deployments/{name}/drift compute)."""
    from relevo.monitoring.drift import DriftConfig
    from relevo.monitoring.service import MonitoringService
    from relevo.monitoring.windows import load_window

    store = rv.store  # type: ignore[attr-defined]
    service = MonitoringService(rv)  # type: ignore[arg-type]
    config = DriftConfig()
    window = load_window(store, "bench", DAY, DAY + timedelta(days=1))  # warm-up
    assert window is not None and window.rows == TOTAL_ROWS, window
    service.report(window, "reference", config)
    times, cpu, whole, whole_cpu = [], [], [], []
    for _ in range(7):
        t0, c0 = time.perf_counter(), time.process_time()
        window = load_window(store, "bench", DAY, DAY + timedelta(days=1))
        t1, c1 = time.perf_counter(), time.process_time()
        assert window is not None
        service.report(window, "reference", config)
        t2, c2 = time.perf_counter(), time.process_time()
        times.append(t1 - t0)
        cpu.append(c1 - c0)
        whole.append(t2 - t0)
        whole_cpu.append(c2 - c0)
    payload = sum(
        len(r.payload) for r in store.profiles.fetch("bench", DAY, DAY + timedelta(days=1))
    )
    out = {
        "median_ms": statistics.median(times) * 1000,
        "min_ms": min(times) * 1000,
        "cpu_ms": statistics.median(cpu) * 1000,
        "query_median_ms": statistics.median(whole) * 1000,
        "query_min_ms": min(whole) * 1000,
        "query_cpu_ms": statistics.median(whole_cpu) * 1000,
        "payload_bytes_per_bucket": payload / BUCKETS,
    }
    print(
        f"[window] {label}: load_window over {BUCKETS} buckets, {window.rows:,} rows: "
        f"median {out['median_ms']:.0f} ms (min {out['min_ms']:.0f} ms, this process's CPU "
        f"{out['cpu_ms']:.0f} ms); the whole drift query (window + report against the "
        f"reference): median {out['query_median_ms']:.0f} ms (min {out['query_min_ms']:.0f} "
        f"ms, CPU {out['query_cpu_ms']:.0f} ms); load average {os.getloadavg()[0]:.1f}; "
        f"{out['payload_bytes_per_bucket'] / 1024:.1f} KiB per bucket",
        flush=True,
    )
    return out


def bench_window(postgres: str | None, distinct: int) -> None:
    with tempfile.TemporaryDirectory(prefix="relevo-bench-profiles-") as tmp:
        home = Path(tmp)
        targets = [("SQLite", f"sqlite:///{home / 'bench.db'}")]
        if postgres:
            targets.append(("PostgreSQL", postgres))
        for label, url in targets:
            rv, secs = fill(url, home / label, distinct)
            print(f"[window] {label}: filled {BUCKETS} buckets in {secs:.0f} s", flush=True)
            time_window(rv, label)
            if label == "PostgreSQL":  # leave the database as it was
                from sqlalchemy import text

                with rv.store.engine.begin() as conn:  # type: ignore[attr-defined]
                    conn.execute(text("DELETE FROM profile_buckets WHERE deployment = 'bench'"))
            rv.close()  # type: ignore[attr-defined]


def bench_serving(rounds: int, duration: float) -> None:
    import relevo
    from relevo.monitoring.windows import load_window

    with tempfile.TemporaryDirectory(prefix="relevo-bench-serving-") as tmp:
        work = Path(tmp)
        model_path, train_path, row = sv.train_cheap(work)
        body = work / "body.json"
        body.write_bytes(orjson.dumps({"instances": [row]}))
        base = {**os.environ, **sv.THREAD_ENV, "RELEVO_HOME": str(work / "home")}
        base.pop("RELEVO_DATABASE_URL", None)
        register = ["models", "register", "churn", str(model_path), "--reference",
                    str(train_path), "--target", "target"]  # fmt: skip
        sv.relevo_cli(register, base)
        sv.relevo_cli(["deploy", "churn", "churn:1"], base)
        rps: dict[str, list[float]] = {"on": [], "off": []}
        cpu: dict[str, list[float]] = {"on": [], "off": []}
        ratios, cpu_ratios = [], []
        logged_on = 0
        order = ["on", "off", "off", "on"] * ((rounds + 1) // 2)
        port = sv.free_port()
        rv = relevo.Relevo(home=work / "home")
        for i, mode in enumerate(order[: 2 * rounds]):
            env = {**base, "RELEVO_PROFILES": "true" if mode == "on" else "false"}
            argv = [str(sv.BIN / "relevo"), "serve", "--port", str(port)]
            before = rv.store.predictions.count("churn")
            proc, log_path = sv.start_server(f"profiles-{mode}-{i}", argv, env)
            try:
                sv.wait_ready(proc, f"http://127.0.0.1:{port}/readyz", log_path)
                url = f"http://127.0.0.1:{port}/v1/deployments/churn/predict"
                sv.run_wrk(url, body, 32, 2)  # warm-up
                cpu0 = sv.process_cpu_s(proc.pid)
                load = sv.run_wrk(url, body, 32, duration)
                cpu1 = sv.process_cpu_s(proc.pid)
            finally:
                sv.stop_server(proc)
            if mode == "on":
                logged_on += rv.store.predictions.count("churn") - before
            rps[mode].append(load.ok_per_s)
            per_request = (cpu1 - cpu0) / max(load.requests, 1) * 1e6 if cpu0 and cpu1 else 0.0
            cpu[mode].append(per_request)
            print(f"[serving] round {i}: profiles {mode}: {load.ok_per_s:,.0f} req/s, "
                  f"{per_request:.0f} us CPU per request (p99 {load.p99_ms:.1f} ms, "
                  f"load average {load.load_avg:.1f})", flush=True)  # fmt: skip
            if i % 2 == 1:
                ratios.append(rps["on"][-1] / rps["off"][-1])
                cpu_ratios.append(cpu["on"][-1] / cpu["off"][-1])
        now = datetime.now(UTC)
        window = load_window(rv.store, "churn", now - timedelta(hours=2), now + timedelta(hours=1))
        profiled = window.rows if window is not None else 0
        rv.close()
        ratio = statistics.median(ratios)
        print(
            f"[serving] c=32, profiles on / off requests/s: median {ratio:.3f} over "
            f"{len(ratios)} pairs ({', '.join(f'{r:.3f}' for r in ratios)}): profiles cost "
            f"{(1 - ratio) * 100:.1f} % of requests/s (goal: under 5 %)",
            flush=True,
        )
        print(
            f"[serving] CPU per request on / off: median {statistics.median(cpu_ratios):.3f} "
            f"({', '.join(f'{r:.3f}' for r in cpu_ratios)})",
            flush=True,
        )
        print(f"[serving] rows logged by the 'on' servers {logged_on:,}, profiled {profiled:,}"
              + ("" if logged_on == profiled else "  <-- ROWS MISSING"), flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", default=os.environ.get("RELEVO_BENCH_POSTGRES"))
    parser.add_argument("--rounds", type=int, default=3, help="pairs of serving runs")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run")
    parser.add_argument("--skip-window", action="store_true")
    parser.add_argument(
        "--distinct", type=int, default=BUCKETS, help="buckets profiled (the rest repeat them)"
    )
    parser.add_argument("--skip-serving", action="store_true")
    args = parser.parse_args()
    try:
        if not args.skip_window:
            bench_window(args.postgres, args.distinct)
        if not args.skip_serving:
            bench_serving(args.rounds, args.duration)
    finally:
        sv.stop_all()


if __name__ == "__main__":
    main()
