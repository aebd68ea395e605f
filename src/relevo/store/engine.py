"""Engines for SQLite (WAL, the embedded default) and PostgreSQL, migrated on first use."""

from __future__ import annotations

import os
import random
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from relevo.errors import MissingExtraError, UnavailableError
from relevo.private import FILE_MODE, private_dir, private_file

MIGRATIONS = Path(__file__).with_name("migrations")

#: how long a new PostgreSQL connection may take (psycopg's `connect_timeout`), unless the URL,
#: the environment (PGCONNECT_TIMEOUT) or a service file (`service=` / PGSERVICE) may set one:
#: a database host that accepts TCP and never answers failed no connection before
CONNECT_TIMEOUT_S = 10

#: Alembic keeps the running migration's context in module globals: one migration per process
_MIGRATING = threading.Lock()


def _timeout_unset(query: Mapping[str, Any]) -> bool:
    """Whether nothing libpq reads may set the connection timeout: a keyword argument would
    override the URL's, PGCONNECT_TIMEOUT and a service file's alike."""
    if "connect_timeout" in query or "service" in query:
        return False
    return not (os.environ.get("PGCONNECT_TIMEOUT") or os.environ.get("PGSERVICE"))


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def safe_url(url: str) -> str:
    """The URL with any password masked, fit for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _unparsed(url)


def _unparsed(url: str) -> str:
    """A URL that does not parse, its user and password (what precedes the last '@') masked:
    with no parser to tell where they end, any of it may be the password."""
    head, at, rest = url.rpartition("@")
    if not at:
        return url
    scheme, slashes, _credentials = head.partition("//")
    return f"{scheme}{slashes}***@{rest}" if slashes else f"***@{rest}"


def create_store_engine(url: str, create_folder: bool = False) -> Engine:
    """An engine for `url`. SQLite gets WAL mode and a busy timeout; its folder is created only
    when `create_folder` (the default store under the relevo home), else it must exist."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise UnavailableError(
            f"not a valid database URL (RELEVO_DATABASE_URL, --database-url): "
            f"{_unparsed(url)!r}; expected sqlite:///path or "
            "postgresql://user:password@host:port/database"
        ) from exc
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            folder = Path(parsed.database).expanduser().parent
            if create_folder:
                try:
                    private_dir(folder)
                except OSError as exc:
                    raise UnavailableError(
                        f"cannot create the folder {folder} for the database: {exc.strerror or exc}"
                    ) from exc
            elif not folder.is_dir():
                raise UnavailableError(
                    f"cannot open the database {safe_url(url)}: folder {folder} does not exist"
                )
            if not parsed.database.startswith("file:") and folder.is_dir():
                _private_sqlite_files(Path(parsed.database).expanduser(), create_folder)
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    elif backend == "postgresql":
        if parsed.drivername == "postgresql":
            # psycopg 3 is what the `postgres` extra installs; plain postgresql:// means it
            parsed = parsed.set(drivername="postgresql+psycopg")
        kwargs["pool_pre_ping"] = True
        if _timeout_unset(parsed.query):
            kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    else:
        raise UnavailableError(
            f"unsupported database {safe_url(url)}: relevo stores its data in SQLite "
            "(sqlite:///path) or PostgreSQL (postgresql://user@host/db)"
        )
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        if parsed.drivername == "postgresql+psycopg":
            raise MissingExtraError("psycopg", "postgres", "A PostgreSQL store") from exc
        raise UnavailableError(f"cannot use {safe_url(url)}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _private_sqlite_files(path: Path, ours: bool) -> None:
    """Make the database file 0600 before SQLite creates it: SQLite gives its -wal and -shm
    files the database file's mode, so all three stay private. A store relevo made in its own
    home is tightened even if an older version left it readable; a file the user pointed at is
    only made private when relevo creates it."""
    try:
        if not path.exists():
            private_file(path)
        elif ours:
            for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
                sibling = path.with_name(name)
                if sibling.exists():
                    os.chmod(sibling, FILE_MODE)
    except OSError:  # a read-only folder: SQLite reports it clearly when it opens the file
        pass


#: the page size of a new SQLite file (one that exists keeps its own: a WAL database cannot
#: change it). The prediction log's rows (~0.7 KiB of JSON each) go in with about a third
#: less CPU on 16 KiB pages than on the 4 KiB default: fewer pages to split, checksum and
#: write to the WAL per row (measured in-process, 42,000 rows in batches of 1,400)
SQLITE_PAGE_SIZE = 16_384
#: the WAL is copied back into the database once it holds this many bytes: SQLite's default
#: (1,000 pages of 4 KiB), whatever the page size
SQLITE_CHECKPOINT_BYTES = 4_096_000


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA busy_timeout=30000")
        # before the first write (the switch to WAL below writes the file's header)
        cur.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
        _enable_wal(cur)
        cur.execute("PRAGMA synchronous=NORMAL")
        page = int(cur.execute("PRAGMA page_size").fetchone()[0])
        cur.execute(f"PRAGMA wal_autocheckpoint={max(1, SQLITE_CHECKPOINT_BYTES // page)}")
    finally:
        cur.close()


def _enable_wal(cur: Any, wait_s: float = 30.0) -> None:
    # turning a new file to WAL needs it alone for a moment, and SQLite reports a concurrent
    # switch (several processes opening a new store) as "database is locked" at once, without
    # waiting for the busy timeout: wait here instead
    deadline = time.monotonic() + wait_s
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def migrate(engine: Engine) -> None:
    """Bring the schema to the latest migration (a no-op when it is already there).

    Several processes may start on a fresh store at once (`relevo serve --workers 4`): the
    first to take the lock migrates, the others wait, see the schema up to date and go on.
    """
    head = head_revision()
    where = safe_url(str(engine.url))
    try:
        conn = engine.connect()
    except DBAPIError as exc:
        raise UnavailableError(f"cannot reach the database at {where}: {_first_line(exc)}") from exc
    try:
        with conn:
            if _current_revision(conn) == head:
                return
            conn.rollback()  # the check's implicit transaction; the upgrade opens its own
            with _MIGRATING, _sqlite_file_lock(engine), conn.begin():
                if conn.dialect.name == "postgresql":
                    # serialise concurrent first starts of several replicas
                    conn.execute(text("SELECT pg_advisory_xact_lock(7461626)"))
                # another process may have migrated while this one waited for the lock
                if _current_revision(conn) != head:
                    cfg = _alembic_config()
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
    except (SQLAlchemyError, CommandError, OSError) as exc:
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            raise UnavailableError(
                f"cannot reach the database at {where}: {_first_line(exc)}"
            ) from exc
        raise UnavailableError(
            f"cannot prepare the database schema at {where}: {_first_line(exc)}"
        ) from exc


def _current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """Hold an exclusive lock on `<database file>.migrate.lock` (SQLite files only).

    SQLite cannot lock a schema change across processes the way PostgreSQL's advisory locks
    do: DDL and the alembic_version check run in separate transactions, so two migrators
    would both create the tables.
    """
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    path = Path(database).expanduser()
    path = private_file(path.with_name(path.name + ".migrate.lock"))
    with path.open("a") as handle:
        _lock_file(handle.fileno())
        try:
            yield
        finally:
            _unlock_file(handle.fileno())


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock_file(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # gives up after ~10 s: try again
                return
            except OSError:
                continue

    def _unlock_file(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock_file(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock_file(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
