"""Feedback benchmark: join 1,000,000 labels to 1,000,000 logged predictions and compute a day
of windowed metrics, on SQLite and on PostgreSQL. Goal (issue 16): under 10 s each.

Run by hand, never part of the test suite:

    .venv/bin/python benchmarks/feedback.py [--rows 1000000] [--window 1h]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]

Setup (not timed): a binary churn-like model is registered and deployed; `--rows` predictions
are written to the log as the prediction log writes them, spread over one UTC day; a Parquet
file holds a label for every one of them, by prediction id. Timed, one after the other:

  ingest    `relevo.feedback.labels.ingest` reading the file in 100,000-row chunks (what
            `relevo feedback DEPLOYMENT --input FILE` does): validate, stage, join to the log by
            id and upsert, in one transaction
  report    `PerformanceService.performance(deployment, window)`: every metric with its interval,
            the calibration table and the estimate before labels, per window of the day

PostgreSQL runs in a schema of its own, dropped at the end.

Beside the wall time, each phase's CPU time: this process's, plus (PostgreSQL) that of the
server processes serving its connections (read from /proc, so the server must run on this
machine; parallel workers and the server's background writers are not counted). On a
shared machine the wall time follows the load; the CPU time is the work itself.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
from sklearn.dummy import DummyClassifier

import relevo
from relevo.feedback.labels import ingest
from relevo.feedback.service import PerformanceService
from relevo.serving.batch_io import iter_chunks

DAY = datetime(2026, 11, 2, tzinfo=UTC)
CHUNK = 100_000


def _setup(rv: relevo.Relevo, rows: int, folder: Path) -> Path:
    frame = pd.DataFrame({"x": np.arange(100) % 7, "churned": np.arange(100) % 2})
    model = DummyClassifier(strategy="prior").fit(frame[["x"]], frame["churned"])
    version = rv.registry.register("bench", model, frame, target="churned")
    rv.deployments.deploy("bench", version.ref)
    rng = np.random.default_rng(0)
    p = rng.random(rows)
    y = (rng.random(rows) < p).astype(int)
    ids = [f"{i:032x}" for i in range(rows)]
    step = timedelta(days=1) / rows
    for start in range(0, rows, CHUNK):
        batch = []
        for i in range(start, min(start + CHUNK, rows)):
            out = orjson.dumps({"probability": float(p[i]), "label": int(p[i] >= 0.5)}).decode()
            batch.append(
                (ids[i], "bench", "bench", 1, DAY + step * i, None, '{"x":1}', out, 1.0, "champion")
            )
        rv.store.predictions.insert_many(batch)
    path = folder / "labels.parquet"
    pd.DataFrame({"id": ids, "label": y}).to_parquet(path, index=False)
    return path


def _server_cpu(rv: relevo.Relevo, application: str | None) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL server process serving `application`."""
    if application is None:
        return {}
    from sqlalchemy import text

    with rv.store.engine.connect() as conn:
        pids = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE application_name = :a"),
            {"a": application},
        ).scalars()
        out = {}
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[int(pid)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _cpu(rv: relevo.Relevo, application: str | None) -> tuple[float, dict[int, float]]:
    return time.process_time(), _server_cpu(rv, application)


def _spent(before: tuple[float, dict[int, float]], after: tuple[float, dict[int, float]]) -> float:
    server = sum(v - before[1].get(pid, 0.0) for pid, v in after[1].items())
    return after[0] - before[0] + server


def _run(
    name: str, url: str, rows: int, window: str, application: str | None = None
) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="relevo-bench-feedback-"))
    try:
        with relevo.Relevo(home=folder / "home", database_url=url) as rv:
            t = time.perf_counter()
            path = _setup(rv, rows, folder)
            setup = time.perf_counter() - t

            def chunks():
                for chunk in iter_chunks(path, CHUNK):
                    yield chunk.index, chunk["id"].tolist(), chunk["label"].tolist()

            c = _cpu(rv, application)
            t = time.perf_counter()
            done = ingest(rv, "bench", chunks())
            t_ingest = time.perf_counter() - t
            c_ingest = _spent(c, c := _cpu(rv, application))
            assert done.accepted == rows, done
            t = time.perf_counter()
            report = PerformanceService(rv).performance(
                "bench", window, now=DAY + timedelta(days=30)
            )
            t_report = time.perf_counter() - t
            c_report = _spent(c, _cpu(rv, application))
            (model,) = report.models
            assert model.labelled == rows
            print(
                f"{name:10} setup {setup:6.1f} s | ingest {t_ingest:5.2f} s | report "
                f"{t_report:5.2f} s ({len(model.windows)} windows) | total "
                f"{t_ingest + t_report:5.2f} s | CPU ingest {c_ingest:5.2f} s, report "
                f"{c_report:5.2f} s, total {c_ingest + c_report:5.2f} s | load "
                f"{os.getloadavg()[0]:.1f}",
                flush=True,
            )
            return {"ingest": t_ingest, "report": t_report}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--window", default="1h")
    parser.add_argument("--postgres", default=os.environ.get("RELEVO_TEST_DATABASE_URL"))
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="relevo-bench-sqlite-"))
    try:
        _run("sqlite", f"sqlite:///{folder / 'relevo.db'}", args.rows, args.window)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if args.postgres:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        schema = f"bench_{uuid.uuid4().hex[:10]}"
        admin_url = make_url(args.postgres).set(drivername="postgresql+psycopg")
        admin = create_engine(admin_url)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(args.postgres).update_query_dict(
            {"options": f"-csearch_path={schema}", "application_name": schema}
        )
        try:
            _run(
                "postgresql",
                url.render_as_string(hide_password=False),
                args.rows,
                args.window,
                schema,
            )
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


if __name__ == "__main__":
    main()
