"""The spool: entries on disk when accepted, segments deleted once stored, replayed by the next
process when the one that wrote them is gone, and a torn tail skipped."""

from __future__ import annotations

import os
import time

import orjson
import pytest

from relevo.serving import spool as spool_module
from relevo.serving.log import FIELDS, LogEntry, PredictionLog
from relevo.serving.spool import HeldSegment, Orphan, Spool, crc32, orphans

ID, FEATURES = FIELDS.index("id"), FIELDS.index("features")


def _entry(n: int, start: int = 0) -> LogEntry:
    ids = [f"{start + i:032x}" for i in range(n)]
    return LogEntry(
        "churn", "churn", 1, time.time(), ids, {"x": list(range(start, start + n))}, [{}] * n, 1.0
    )


class Store:
    def __init__(self, up: bool = True) -> None:
        self.up = up
        self.rows: list[tuple] = []

    def write(self, rows: list[tuple]) -> int:
        if not self.up:
            raise ConnectionError("the database is down")
        self.rows.extend(rows)
        return len(rows)


def _die(spool: Spool) -> None:
    """What a killed process leaves: its segments on disk, their locks released."""
    for seg in spool._segments.values():
        seg.close()  # its file and its map (which holds the file, and the lock, too)
    spool._segments.clear()


def _records(path) -> list[bytes]:
    """The payloads a replay would read from the segment at `path`."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return list(Orphan(path, fd).records())
    finally:
        os.close(fd)


def test_an_accepted_entry_is_on_disk_before_offer_returns(tmp_path):
    store = Store(up=False)
    spool = Spool(tmp_path / "spool")
    log = PredictionLog(store.write, spool=spool, flush_interval_s=60)
    assert log.offer(_entry(3))
    assert log.offer(_entry(2, start=3))
    _die(spool)  # the process "dies" with nothing stored
    (orphan,) = orphans(tmp_path / "spool")
    docs = [orjson.loads(p.split(b"\n")[0]) for p in orphan.records()]
    orphan.release()
    assert [len(d[5]) for d in docs] == [3, 2]  # the ids of each entry, in order
    log.close(timeout_s=0.1)


def test_a_live_process_segments_are_not_replayed(tmp_path):
    spool = Spool(tmp_path / "spool")
    spool.append(b"{}")
    assert list(orphans(tmp_path / "spool")) == []  # locked by its owner
    spool.close()


def test_the_next_process_stores_a_dead_process_rows_once_and_deletes_them(tmp_path):
    folder = tmp_path / "spool"
    dead = PredictionLog(Store(up=False).write, spool=Spool(folder), flush_interval_s=60)
    dead.put_blocking(_entry(4))
    dead.put_blocking(_entry(3, start=4))
    _die(dead.spool)
    dead.close(timeout_s=0.1)

    store = Store()
    log = PredictionLog(store.write, spool=Spool(folder))
    assert log.recover() == 7
    assert sorted(r[ID] for r in store.rows) == sorted(_entry(4).ids + _entry(3, start=4).ids)
    assert [orjson.loads(r[FEATURES]) for r in store.rows][:2] == [{"x": 0}, {"x": 1}]
    assert log.recover() == 0  # deleted: nothing is stored twice
    log.close()
    assert list(folder.iterdir()) == []  # a clean stop leaves no segment behind


def test_a_torn_last_record_is_skipped_and_the_rest_replayed(tmp_path, caplog):
    folder = tmp_path / "spool"
    spool = Spool(folder)
    log = PredictionLog(Store(up=False).write, spool=spool, flush_interval_s=60)
    for k in range(3):
        log.put_blocking(_entry(2, start=2 * k))
    path = spool._current.path
    _die(spool)
    log.close(timeout_s=0.1)
    # a machine crash cut the last write short: its last bytes never reached the disk
    end = sum(8 + len(p) for p in _records(path))
    with open(path, "r+b") as fh:
        fh.seek(end - 5)
        fh.write(b"\x00" * 5)

    store = Store()
    replay = PredictionLog(store.write, spool=Spool(folder))
    assert replay.recover() == 4
    replay.close()
    assert "damaged record" in caplog.text


@pytest.mark.parametrize("fsync", [False, True])
def test_segments_rotate_and_are_deleted_once_stored(tmp_path, fsync):
    folder = tmp_path / "spool"
    spool = Spool(folder, fsync=fsync, segment_bytes=400)
    store = Store()
    log = PredictionLog(store.write, spool=spool, flush_interval_s=0.01)
    for k in range(20):
        log.put_blocking(_entry(2, start=2 * k))
    log.flush()
    assert len(store.rows) == 40
    # everything is stored: only the segment being written remains, emptied (a crash now
    # would leave nothing to replay)
    (current,) = folder.glob("*.spool")
    assert _records(current) == []
    log.close()
    assert list(folder.glob("*.spool")) == []


def test_rows_the_store_cannot_take_before_a_stop_stay_in_the_spool(tmp_path):
    folder = tmp_path / "spool"
    down = Store(up=False)
    log = PredictionLog(
        down.write, spool=Spool(folder), flush_interval_s=0.01, dead_letter=tmp_path / "dl"
    )
    log.put_blocking(_entry(5))
    log.close(timeout_s=0.3)
    assert not (tmp_path / "dl").exists()  # not dead-lettered: replayed at the next start
    assert (log.rows_written, log.rows_left) == (0, 5)  # what the server's stop then says
    store = Store()
    replay = PredictionLog(store.write, spool=Spool(folder))
    assert replay.recover() == 5
    replay.close()


@pytest.mark.parametrize("fsync", [False, True])
def test_a_held_segment_is_replayed_only_once_handed_over(tmp_path, fsync):
    folder = tmp_path / "spool"
    held = HeldSegment(folder, fsync=fsync)
    held.append_many([b"first", b"second"])
    assert list(orphans(folder)) == []  # a run not over yet: nobody replays it
    path = held.hand_over()
    assert path.suffix == ".spool" and not list(folder.glob(".*"))
    (orphan,) = orphans(folder)
    assert list(orphan.records()) == [b"first", b"second"]
    orphan.done()
    held.discard()  # after the hand-over: the segment is the log's, nothing to delete
    assert list(folder.iterdir()) == []


def test_a_held_segment_of_a_dead_run_is_deleted_by_the_next_one(tmp_path):
    folder = tmp_path / "spool"
    dead = HeldSegment(folder)
    dead.append_many([b"never logged"])
    alive = HeldSegment(folder)  # the dead run's file is still locked: kept
    assert dead.path.exists()
    assert dead._fd is not None
    os.close(dead._fd)  # the process dies: its lock goes
    dead._fd = None
    HeldSegment(folder).discard()
    assert sorted(folder.iterdir()) == [alive.path]
    alive.discard()
    assert list(orphans(folder)) == [] and list(folder.iterdir()) == []


def test_a_record_larger_than_a_segment_gets_one_of_its_own(tmp_path):
    folder = tmp_path / "spool"
    spool = Spool(folder, segment_bytes=4096)
    spool.append(b"small")
    big = b"x" * 10_000
    number = spool.append(big)
    spool.append(b"after")
    paths = {seg.number: seg.path for seg in spool._segments.values()}
    _die(spool)
    assert _records(paths[number]) == [big, b"after"]
    assert sorted(p for ps in map(_records, paths.values()) for p in ps) == sorted(
        [b"small", big, b"after"]
    )


def test_a_full_disk_is_an_error_when_a_segment_is_made_not_a_crash_later(tmp_path, monkeypatch):
    import errno

    from relevo.errors import UnavailableError
    from relevo.serving import spool as spool_module

    if not spool_module.MAPPED:
        pytest.skip("segments are written, not mapped, on this platform")
    spool = Spool(tmp_path / "spool", segment_bytes=4096)

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool_module.os, "posix_fallocate", full)
    with pytest.raises(UnavailableError, match="No space left on device"):
        spool.append(b"y" * 5000)  # needs a new segment
    monkeypatch.undo()
    assert spool.append(b"z") >= 1  # the disk has room again: appends go on
    assert not list((tmp_path / "spool").glob(".*.new"))  # nothing half-made left behind
    spool.close()


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 11_000, 100_003])
def test_a_records_check_is_zlibs_crc32_whatever_its_size(size):
    """The spool checks a record in pieces (keeping the GIL): the same CRC-32 as zlib's of
    the whole payload, so segments written before and after read alike."""
    import zlib

    payload = os.urandom(size)
    assert crc32(payload) == zlib.crc32(payload)


def test_a_segment_that_cannot_be_read_is_skipped_and_the_others_replayed(tmp_path, caplog):
    folder = tmp_path / "spool"
    dead = PredictionLog(Store(up=False).write, spool=Spool(folder), flush_interval_s=60)
    dead.put_blocking(_entry(3))
    _die(dead.spool)
    dead.close(timeout_s=0.1)
    loop = folder / "0-a-link-to-itself.spool"  # sorted first; opening it fails (ELOOP)
    loop.symlink_to(loop.name)

    store = Store()
    log = PredictionLog(store.write, spool=Spool(folder), flush_interval_s=0.01)
    assert log.recover() == 3
    assert f"cannot read the spool segment {loop}" in caplog.text
    log.put_blocking(_entry(2, start=3))  # the log goes on
    log.flush()
    assert sorted(r[ID] for r in store.rows) == sorted(_entry(5).ids)
    log.close()


class FailsOnce(Store):
    """A store whose `fail_at`-th write fails (the database went away for a moment)."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.calls = 0
        self.fail_at = fail_at

    def write(self, rows: list[tuple]) -> int:
        self.calls += 1
        if self.calls == self.fail_at:
            raise ConnectionError("the database is away")
        return super().write(rows)


def test_a_replay_tried_again_sends_only_what_the_failed_attempt_did_not_store(tmp_path):
    folder = tmp_path / "spool"
    dead = PredictionLog(Store(up=False).write, spool=Spool(folder), flush_interval_s=60)
    for k in range(4):
        dead.put_blocking(_entry(10, start=10 * k))
    _die(dead.spool)
    dead.close(timeout_s=0.1)
    (left,) = folder.glob("*.spool")

    store = FailsOnce(fail_at=2)
    log = PredictionLog(store.write, spool=Spool(folder), flush_rows=20, flush_interval_s=60)
    assert log.recover() == 20  # the first two entries; then the store failed
    assert log.errors == 1 and left.exists()  # kept for the next try
    assert log.recover() == 20  # the last two only
    assert sorted(r[ID] for r in store.rows) == sorted(_entry(40).ids)  # each row sent once
    assert log.rows_recovered == 40 and not left.exists()
    log.close()


def test_a_segment_of_entries_this_version_cannot_read_is_kept_and_the_others_replayed(
    tmp_path, caplog
):
    folder = tmp_path / "spool"
    newer = Spool(folder)  # a later relevo's segment: an entry of a format this one lacks
    newer.append(b'[9, "churn", "churn", 1]\n')
    (kept,) = folder.glob("*.spool")
    _die(newer)
    dead = PredictionLog(Store(up=False).write, spool=Spool(folder), flush_interval_s=60)
    dead.put_blocking(_entry(3))
    _die(dead.spool)
    dead.close(timeout_s=0.1)

    store = Store()
    log = PredictionLog(store.write, spool=Spool(folder))
    assert log.recover() == 3  # the readable segment, whatever order they come in
    assert sorted(r[ID] for r in store.rows) == sorted(_entry(3).ids)
    assert f"the spool segment {kept} holds an entry this version" in caplog.text
    assert kept.exists() and log.errors == 1
    assert log.recover() == 0 and log.errors == 1  # kept, and said once
    log.close()
    assert kept.exists()


def _wait_for_next(spool: Spool) -> None:
    deadline = time.monotonic() + 10
    while spool._next is None:
        assert time.monotonic() < deadline, "the next segment was never made ahead"
        time.sleep(0.005)


@pytest.mark.skipif(not spool_module.MAPPED, reason="segments are written, not mapped, here")
def test_a_prepared_spool_makes_its_next_segment_ahead_and_loses_nothing_across_them(tmp_path):
    folder = tmp_path / "spool"
    spool = Spool(folder, segment_bytes=4096, prepare=True)
    _wait_for_next(spool)
    # the segment being written and one made ahead, empty, both locked by this process
    assert len(list(folder.glob("*.spool"))) == 2
    assert list(orphans(folder)) == []
    payloads = [os.urandom(700) + bytes([k]) for k in range(30)]  # ~5 segments' worth
    numbers = []
    for p in payloads:
        numbers.append(spool.append(p))
        _wait_for_next(spool)  # (a busy server seldom fills 16 MiB before it is ready)
    assert len(set(numbers)) >= 5 and numbers == sorted(numbers)
    paths = sorted(spool.paths)
    _die(spool)  # killed with nothing stored: every record is replayed, in order
    replayed = [r for o in orphans(folder) for r in _records(o.path)]
    assert replayed == payloads
    assert len(paths) == len(set(numbers)) + 1  # the one made ahead was never written


@pytest.mark.skipif(not spool_module.MAPPED, reason="segments are written, not mapped, here")
def test_a_prepared_spools_unused_next_segment_goes_when_it_closes(tmp_path):
    folder = tmp_path / "spool"
    store = Store()
    log = PredictionLog(store.write, spool=Spool(folder, prepare=True), flush_interval_s=0.01)
    _wait_for_next(log.spool)
    log.put_blocking(_entry(3))
    log.close()
    assert len(store.rows) == 3
    assert list(folder.iterdir()) == []


@pytest.mark.skipif(not spool_module.MAPPED, reason="segments are written, not mapped, here")
def test_a_next_segment_that_cannot_be_made_ahead_is_made_or_refused_by_the_append(
    tmp_path, monkeypatch
):
    import errno

    from relevo.errors import UnavailableError

    calls = []

    def full(fd, offset, length):
        calls.append(length)
        raise OSError(errno.ENOSPC, "No space left on device")

    spool = Spool(tmp_path / "spool", segment_bytes=4096, prepare=True)
    _wait_for_next(spool)
    spool.append(b"a" * 3000)
    monkeypatch.setattr(spool_module.os, "posix_fallocate", full)
    spool.append(b"b" * 3000)  # into the segment made ahead; making the next one fails
    deadline = time.monotonic() + 10
    while not calls or (spool._preparing is not None and spool._preparing.is_alive()):
        assert time.monotonic() < deadline
        time.sleep(0.005)
    with pytest.raises(UnavailableError, match="No space left on device"):
        spool.append(b"c" * 3000)  # needs a new segment: the disk's refusal is the append's
    monkeypatch.undo()
    assert spool.append(b"d" * 3000) >= 1  # room again: appends go on
    spool.close()


def _left_by_a_crash(folder, n: int = 5) -> None:
    """What a killed process leaves in `folder`: a segment of `n` rows never stored."""
    down = Store(up=False)
    dead = PredictionLog(down.write, spool=Spool(folder), flush_interval_s=60)
    dead.put_blocking(_entry(n))
    _die(dead.spool)
    dead._abandon = True
    dead.close(timeout_s=0.1)


def test_the_next_start_replays_the_spool_whatever_the_urls_spelling(
    relevo_home, database_url, tmp_path
):
    # a rotated password, another driver, a connection option: the same store
    from sqlalchemy.engine import make_url

    import relevo
    from relevo.serving.log import open_prediction_log
    from relevo.serving.spool import store_folder

    if database_url.startswith("sqlite"):
        other = f"sqlite:///{tmp_path.as_posix()}/./relevo.db"  # the same file
    else:
        url = make_url(database_url)
        other = (
            url.set(drivername="postgresql+psycopg", password="rotated")
            .update_query_dict({"application_name": "relevo"})
            .render_as_string(hide_password=False)
        )
        other = other.replace(":rotated@", "@") if url.password is None else other
    with relevo.Relevo(home=relevo_home, database_url=database_url) as rv:
        rv.store.predictions.count("churn")  # the store is made
        _left_by_a_crash(store_folder(relevo_home, database_url))
    assert store_folder(relevo_home, other) == store_folder(relevo_home, database_url)
    with relevo.Relevo(home=relevo_home, database_url=other) as again:
        plog = open_prediction_log(again)
        assert plog is not None
        plog.close()
        assert again.store.predictions.count("churn") == 5


def test_another_schema_or_database_is_another_store(tmp_path):
    from relevo.serving.spool import store_folder

    base = "postgresql://u@db.example:5432/relevo"
    assert store_folder(tmp_path, base) == store_folder(tmp_path, base.replace("u@", "u:pw@"))
    assert store_folder(tmp_path, base) == store_folder(tmp_path, base.replace(":5432", ""))
    assert store_folder(tmp_path, base) != store_folder(tmp_path, base + "?options=-csearch_path=a")
    assert store_folder(tmp_path, base) != store_folder(tmp_path, base.replace("/relevo", "/other"))
    assert store_folder(tmp_path, base) != store_folder(tmp_path, base.replace("u@", "v@"))


def test_an_earlier_versions_spool_of_the_store_is_replayed(relevo_home, database_url):
    # earlier versions named the folder by the whole URL (password and options included)
    import relevo
    from relevo.serving.log import open_prediction_log
    from relevo.serving.spool import legacy_store_folder, store_folder

    with relevo.Relevo(home=relevo_home, database_url=database_url) as rv:
        rv.store.predictions.count("churn")
        legacy = legacy_store_folder(relevo_home, database_url)
        assert legacy != store_folder(relevo_home, database_url)
        _left_by_a_crash(legacy, 4)
        plog = open_prediction_log(rv)
        assert plog is not None
        plog.close()
        assert rv.store.predictions.count("churn") == 4
        assert not legacy.exists()


# 1. spool: different PostgreSQL databases share one spool folder
@pytest.mark.parametrize(
    ("a", "b"),
    [
        (
            "postgresql://app:pw@/relevo?host=db-a.internal",
            "postgresql://app:pw@/relevo?host=db-b.internal",
        ),
        (
            "postgresql://app:pw@/relevo?host=/run/pg-a",
            "postgresql://app:pw@/relevo?host=/run/pg-b",
        ),
        ("postgresql://app:pw@db/relevo?port=5433", "postgresql://app:pw@db/relevo?port=5434"),
        ("postgresql://app:pw@db/?dbname=a", "postgresql://app:pw@db/?dbname=b"),
        ("postgresql://app@/?service=prod", "postgresql://app@/?service=staging"),
    ],
)
def test_two_postgresql_databases_never_share_a_spool_folder(a, b, tmp_path):
    from relevo.serving.spool import store_folder

    assert store_folder(tmp_path, a) != store_folder(tmp_path, b)
