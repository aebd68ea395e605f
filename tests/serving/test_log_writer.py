"""The log's writer process: rows stored and profiled beside the server, nothing lost when it
dies, profiles persisted as the server's own replica."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from relevo.monitoring.windows import load_window
from relevo.serving.entries import encode
from relevo.serving.log import FIELDS, LogEntry, PredictionLog, open_prediction_log
from relevo.serving.log_writer import RemoteWriter, WriterConfig
from relevo.serving.spool import Spool

ID, FEATURES = FIELDS.index("id"), FIELDS.index("features")


def _entry(n: int, start: int = 0, deployment: str = "churn") -> LogEntry:
    ids = [f"{start + i:032x}" for i in range(n)]
    features = {"x": [float(start + i) for i in range(n)]}
    outputs = [{"probability": 0.25} for _ in range(n)]
    return LogEntry(deployment, "churn", 1, time.time(), ids, features, outputs, 1.5, None)


def _stored(store, deployment: str = "churn") -> dict[str, dict]:
    return {
        row["id"]: orjson.loads(row["features"])
        for chunk in store.predictions.iter_rows(deployment)
        for row in chunk
    }


def _log(rv, tmp_path, **kw) -> tuple[PredictionLog, RemoteWriter]:
    remote = RemoteWriter(WriterConfig(database_url=rv.store.url, dead_letter=None, profiles=False))
    plog = PredictionLog(
        rv.store.predictions.insert_many,
        flush_interval_s=0.01,
        spool=Spool(tmp_path / "spool"),
        remote=remote,
        **kw,
    )
    return plog, remote


def test_the_writer_process_stores_every_accepted_row(rv, tmp_path):
    plog, remote = _log(rv, tmp_path, flush_rows=40)
    sent = [_entry(1, start=k) for k in range(100)] + [_entry(150, start=1000)]
    for entry in sent:
        plog.put_blocking(entry)
    plog.flush()
    assert plog.rows_written == 250 and plog.depth == 0
    plog.close()
    stored = _stored(rv.store)
    assert sorted(stored) == sorted(i for e in sent for i in e.ids)
    assert stored[f"{1042:032x}"] == {"x": 1042.0}
    # the 150-row entry's features are stored once, the one-row entries' inline
    with rv.store.engine.connect() as conn:
        entries = conn.exec_driver_sql("SELECT id FROM prediction_inputs").scalars().all()
        shared = conn.exec_driver_sql(
            "SELECT count(*) FROM predictions WHERE inputs IS NOT NULL AND features = ''"
        ).scalar()
    assert (entries, shared) == ([f"{1000:032x}"], 150)
    assert remote.starts == 1
    assert not list((tmp_path / "spool").glob("*.spool"))  # all stored: nothing to replay


def test_a_killed_writer_process_is_replaced_and_loses_nothing(rv, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="relevo")
    plog, remote = _log(rv, tmp_path)
    plog.put_blocking(_entry(10))
    plog.flush()
    assert remote._proc is not None
    pid = remote._proc.pid
    os.kill(pid, signal.SIGKILL)
    remote._proc.wait()
    for k in range(1, 6):
        plog.put_blocking(_entry(10, start=k * 10))
    plog.close()
    assert len(_stored(rv.store)) == 60
    assert remote.starts == 2
    # the operator is told, once, which process ended and how
    said = [r.getMessage() for r in caplog.records if "writer process (pid" in r.getMessage()]
    assert said == [
        f"the prediction log's writer process (pid {pid}) ended with exit code -9 between "
        "batches: starting another; the rows it had not stored are sent again"
    ]


@pytest.fixture
def deployed(rv, churn_pipeline, churn_frame):
    version = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", version.ref)
    return version


def test_the_writer_process_profiles_the_rows_as_the_server_replica(rv, deployed):
    """The defaults: a writer process stores and profiles the rows; the quality counts of the
    serving process reach the same replica's buckets, so a server is one replica."""
    assert rv.settings.log_writer == "process"
    plog = open_prediction_log(rv)
    assert plog is not None and plog.remote is not None and plog.profiles is not None
    model = (deployed.name, deployed.version)
    ages = [30.0 + i for i in range(20)]
    plog.put_blocking(
        LogEntry(
            "churn", *model, time.time(), [f"{i:032x}" for i in range(20)], {"age": ages},
            [{"probability": 0.1}] * 20, 2.0, None,
        )
    )  # fmt: skip
    plog.profiles.tally.failed("churn", model, "champion", 3)
    plog.close()
    now = datetime.now(UTC)
    rows = rv.store.profiles.fetch("churn", now - timedelta(hours=1), now + timedelta(hours=1))
    assert {r.replica for r in rows} == {plog.profiles.replica}
    assert sum(r.rows for r in rows) == 20
    window = load_window(rv.store, "churn", now - timedelta(hours=1), now + timedelta(hours=1))
    assert window is not None and window.rows == 20
    assert window.quality.failed == 3
    assert window.inputs.columns["age"].mean == pytest.approx(sum(ages) / 20, rel=1e-12)


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_either_writer_gives_the_same_rows(rv, tmp_path, writer, monkeypatch):
    monkeypatch.setenv("RELEVO_LOG_WRITER", writer)
    from relevo.settings import Settings

    rv.settings = rv.settings.model_copy(update={"log_writer": Settings().log_writer})
    plog = open_prediction_log(rv)
    assert plog is not None
    assert (plog.remote is not None) == (writer == "process")
    plog.put_blocking(_entry(5, start=7, deployment=f"dep-{writer}"))
    plog.close()
    assert _stored(rv.store, f"dep-{writer}") == {f"{7 + i:032x}": {"x": 7.0 + i} for i in range(5)}


def test_frames_of_any_size_are_read_whole_through_the_reused_buffer(rv):
    # one write of many entries (a frame over the reader's first buffer and over what it keeps)
    # and small ones around it, straight through the writer process: every row comes back
    remote = RemoteWriter(WriterConfig(database_url=rv.store.url, dead_letter=None, profiles=False))
    try:
        big = [encode(_entry(500, start=i * 500)) for i in range(60)]  # ~1.5 MB, 30,000 rows
        assert sum(map(len, big)) > 1 << 20
        assert remote.write([encode(_entry(3, start=10**6))]) == (3, 0)
        assert remote.write(big) == (30_000, 0)
        assert remote.write([encode(_entry(2, start=2 * 10**6))]) == (2, 0)
    finally:
        remote.close()
    stored = _stored(rv.store)
    assert len(stored) == 30_005
    assert stored[f"{29_999:032x}"] == {"x": 29_999.0}
    assert stored[f"{2 * 10**6 + 1:032x}"] == {"x": 2_000_001.0}


def test_the_frame_reader_reuses_its_buffer_and_lets_a_big_one_go():
    from relevo.serving.log_writer import _FrameReader

    r, w = os.pipe()
    chunks = [b"a" * 10, b"b" * 300, b"c" * 50, b"d" * 20]
    os.write(w, b"".join(chunks))
    os.close(w)
    with os.fdopen(r, "rb", buffering=0) as src:
        frames = _FrameReader(src, size=64, keep=128)
        assert bytes(frames.read(10)) == chunks[0]
        first = frames._buf
        assert bytes(frames.read(300)) == chunks[1]  # grown to hold it
        assert len(frames._buf) == 300
        assert bytes(frames.read(50)) == chunks[2]  # past `keep`: a buffer of the first size
        assert len(frames._buf) == 64 and frames._buf is not first
        kept = frames._buf
        assert bytes(frames.read(20)) == chunks[3]
        assert frames._buf is kept
        with pytest.raises(ValueError, match="end of input"):
            frames.read(1)


def test_a_stop_never_hangs_on_a_writer_process_that_does_not_answer(rv, tmp_path):
    """Its store hangs (a lock, a dead link): the stop gives up on it after its timeout, and
    the rows it had not stored are in the spool for the next start."""
    plog, remote = _log(rv, tmp_path)
    plog.put_blocking(_entry(10))
    plog.flush()
    assert remote._proc is not None
    stuck = remote._proc.pid
    os.kill(stuck, signal.SIGSTOP)
    try:
        plog.put_blocking(_entry(10, start=10))
        closing = threading.Thread(target=plog.close, kwargs={"timeout_s": 1.0}, daemon=True)
        closing.start()
        closing.join(timeout=60)
        assert not closing.is_alive(), "close() hung on the stopped writer process"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stuck, signal.SIGCONT)
    assert len(_stored(rv.store)) == 10
    replay, _ = _log(rv, tmp_path)
    assert replay.recover() == 10
    replay.close()
    assert len(_stored(rv.store)) == 20


def test_a_writer_process_whose_server_is_gone_exits_quietly(rv):
    # a server killed outright (kill -9, the OOM killer) while its writer process stores a
    # batch: the reply meets a closed pipe, and the server log got a BrokenPipeError traceback
    import struct
    import subprocess
    import sys

    config = WriterConfig(database_url=rv.settings.resolved_database_url, dead_letter=None,
                          profiles=False)  # fmt: skip
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    env = {**os.environ, "RELEVO_LOG_WRITER_CONFIG": orjson.dumps(config.__dict__).decode()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "relevo.serving.log_writer", "--read-fd", str(to_child_r),
         "--write-fd", str(from_child_w)],
        pass_fds=(to_child_r, from_child_w), env=env, stderr=subprocess.PIPE,
    )  # fmt: skip
    os.close(to_child_r)
    os.close(from_child_w)
    os.close(from_child_r)  # the server is gone before the reply
    records = b"".join(struct.pack("<I", len(p)) + p for p in [encode(_entry(3))])
    os.write(to_child_w, struct.pack("<BI", ord("W"), len(records)) + records)
    os.close(to_child_w)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()
    assert len(rv.store.predictions.stored([_entry(3).ids[0]])) == 1  # stored all the same
