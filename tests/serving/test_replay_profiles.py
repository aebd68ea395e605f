"""A spool replay after a crash profiles each row once: the dead process's segment also holds
entries it stored and profiled before it died, which the replay stores again (idempotently)
but must not count again in the drift profiles."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from relevo.serving.log import LogEntry, PredictionLog, open_prediction_log
from relevo.serving.profiling import ProfileBuilder
from relevo.serving.spool import Spool, store_folder


def _entry(n: int, start: int) -> LogEntry:
    ids = [f"{start + i:032x}" for i in range(n)]
    return LogEntry(
        "churn", "churn", 1, time.time(), ids, {"age": [30.0 + i for i in range(n)]},
        [{"probability": 0.25}] * n, 1.0, None,
    )  # fmt: skip


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_a_replay_after_a_crash_profiles_each_row_once(rv, churn_pipeline, churn_frame, writer):
    version = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", version.ref)
    folder = store_folder(rv.settings.home, rv.settings.resolved_database_url)
    calls: list[int] = []

    def write(rows):  # the store takes the first batch, then goes away
        calls.append(len(rows))
        if len(calls) > 1:
            raise ConnectionError("the database is away")
        return rv.store.predictions.insert_many(rows)

    profiles = ProfileBuilder(rv.store, bucket_s=60, flush_s=3600)
    dead = PredictionLog(
        write, spool=Spool(folder), flush_rows=10, flush_interval_s=0.01, profiles=profiles
    )
    # one micro-batch's entries; the writer stores the first 10 rows, then the store is away
    assert dead.offer_many([_entry(10, 0), _entry(10, 100)])
    deadline = time.monotonic() + 10
    while dead.rows_written < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert dead.rows_written == 10
    time.sleep(0.3)
    profiles.close()  # the first entry is stored and profiled
    for seg in dead.spool._segments.values():  # kill -9: the segment stays, holding both
        seg.close()
    dead.spool._segments.clear()
    dead._abandon = True
    dead.close(timeout_s=0.1)

    rv.settings.log_writer = writer
    plog = open_prediction_log(rv)  # the next start replays the segment
    assert plog is not None
    plog.close()
    assert rv.store.predictions.count("churn") == 20
    now = datetime.now(UTC)
    buckets = rv.store.profiles.fetch("churn", now - timedelta(hours=1), now + timedelta(hours=1))
    assert sum(b.rows for b in buckets) == 20
