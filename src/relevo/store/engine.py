"""Engines for SQLite (WAL, the embedded default) and PostgreSQL, migrated on first use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError

from relevo.errors import MissingExtraError, UnavailableError

MIGRATIONS = Path(__file__).with_name("migrations")


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def safe_url(url: str) -> str:
    """The URL with any password masked, fit for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def create_store_engine(url: str, create_folder: bool = False) -> Engine:
    """An engine for `url`. SQLite gets WAL mode and a busy timeout; its folder is created only
    when `create_folder` (the default store under the relevo home), else it must exist."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise UnavailableError(f"not a valid database URL: {url!r}") from exc
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            folder = Path(parsed.database).expanduser().parent
            if create_folder:
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise UnavailableError(
                        f"cannot create the folder {folder} for the database: {exc.strerror or exc}"
                    ) from exc
            elif not folder.is_dir():
                raise UnavailableError(
                    f"cannot open the database {safe_url(url)}: folder {folder} does not exist"
                )
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    elif backend == "postgresql":
        if parsed.drivername == "postgresql":
            # psycopg 3 is what the `postgres` extra installs; plain postgresql:// means it
            parsed = parsed.set(drivername="postgresql+psycopg")
        kwargs["pool_pre_ping"] = True
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


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def migrate(engine: Engine) -> None:
    """Bring the schema to the latest migration (a no-op when it is already there)."""
    head = head_revision()
    try:
        with engine.connect() as conn:
            if MigrationContext.configure(conn).get_current_revision() == head:
                return
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # serialise concurrent first starts of several replicas
                conn.execute(text("SELECT pg_advisory_xact_lock(7461626)"))
            cfg = _alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except OperationalError as exc:
        raise UnavailableError(
            f"cannot reach the database at {safe_url(str(engine.url))}: {_first_line(exc)}"
        ) from exc
    except SQLAlchemyError as exc:
        raise UnavailableError(
            f"cannot prepare the database at {safe_url(str(engine.url))}: {_first_line(exc)}"
        ) from exc


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
