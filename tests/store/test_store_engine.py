"""Migrating on first use: concurrent first starts on a fresh store, and messages that tell a
database that cannot be reached from a schema that cannot be prepared."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from relevo.errors import UnavailableError
from relevo.store import Store
from relevo.store.engine import create_store_engine, head_revision


def open_store(url: str) -> str:
    try:
        Store(url).close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def test_threads_opening_a_fresh_sqlite_file_at_once_all_succeed(tmp_path: Path):
    for trial in range(5):
        url = f"sqlite:///{(tmp_path / f'fresh{trial}.db').as_posix()}"
        start = threading.Barrier(4)
        results: list[str] = []

        def first_start(url: str, start: threading.Barrier, results: list[str]) -> None:
            start.wait(timeout=30)
            results.append(open_store(url))

        threads = [
            threading.Thread(target=first_start, args=(url, start, results), daemon=True)
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert results == ["ok"] * 4
        assert (tmp_path / f"fresh{trial}.db.migrate.lock").exists()


def _open_when_released(url: str, ready: Any, go: Any, out: Any) -> None:
    ready.put(None)  # imports done: spawn starts slowly, and unevenly
    go.wait(timeout=60)
    out.put(open_store(url))


@pytest.mark.slow
def test_processes_opening_a_fresh_sqlite_file_at_once_all_succeed(tmp_path: Path):
    """`relevo serve --workers 4` on a new home: four processes migrate the same new file."""
    ctx = multiprocessing.get_context("spawn")
    for trial in range(3):
        url = f"sqlite:///{(tmp_path / f'fresh{trial}.db').as_posix()}"
        ready, go, out = ctx.Queue(), ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(target=_open_when_released, args=(url, ready, go, out)) for _ in range(4)
        ]
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=60)
        go.set()
        results = [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        assert results == ["ok"] * 4


def test_a_schema_that_cannot_be_created_is_not_called_unreachable(database_url):
    engine = create_store_engine(database_url)
    with engine.begin() as conn:  # a table in the way of the first migration
        conn.execute(text("CREATE TABLE deployments (unrelated INTEGER)"))
    engine.dispose()

    with pytest.raises(UnavailableError, match="cannot prepare the database schema") as info:
        Store(database_url)
    assert "cannot reach" not in str(info.value)


def test_a_database_from_a_newer_relevo_is_refused_clearly(database_url):
    Store(database_url).close()
    engine = create_store_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    engine.dispose()

    with pytest.raises(
        UnavailableError, match=r"cannot prepare the database schema.*from_the_future"
    ):
        Store(database_url)


def test_a_database_that_cannot_be_opened_is_unreachable(tmp_path: Path):
    folder = tmp_path / "a-folder.db"
    folder.mkdir()
    with pytest.raises(UnavailableError, match="cannot reach the database"):
        Store(f"sqlite:///{folder.as_posix()}")


def test_an_up_to_date_store_opens_without_migrating(database_url):
    Store(database_url).close()
    store = Store(database_url)  # the second open only reads the revision
    with store.engine.connect() as conn:
        assert (
            conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            == head_revision()
        )
    store.close()


def test_a_new_sqlite_file_gets_large_pages_and_an_existing_one_keeps_its_own(tmp_path: Path):
    import sqlite3

    def pragmas(url: str) -> tuple[int, int, str]:
        engine = create_store_engine(url)
        try:
            with engine.connect() as conn:
                return (
                    conn.execute(text("PRAGMA page_size")).scalar_one(),
                    conn.execute(text("PRAGMA wal_autocheckpoint")).scalar_one(),
                    conn.execute(text("PRAGMA journal_mode")).scalar_one(),
                )
        finally:
            engine.dispose()

    store = Store(f"sqlite:///{tmp_path / 'new.db'}")
    store.close()
    # the WAL is checkpointed at the same size in bytes as SQLite's default (1,000 x 4 KiB)
    assert pragmas(f"sqlite:///{tmp_path / 'new.db'}") == (16384, 250, "wal")
    old = tmp_path / "old.db"
    con = sqlite3.connect(old)
    con.execute("CREATE TABLE t (x)")  # made with the default page size, not in WAL mode
    con.commit()
    con.close()
    assert pragmas(f"sqlite:///{old}") == (4096, 1000, "wal")
