"""`Store.ping` against a database that accepts connections and never answers (a network
partition): it gives up within its bound, and pings never pile up threads."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from relevo.errors import UnavailableError
from relevo.store import Store
from relevo.store import engine as store_engine

pytest.importorskip("psycopg")


@pytest.fixture
def silent_database() -> Iterator[str]:
    """A PostgreSQL URL whose server completes the TCP handshake and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # never accepted: the kernel completes the handshakes
        port = listener.getsockname()[1]
        yield f"postgresql://relevo:secret@127.0.0.1:{port}/relevo?sslmode=disable"


def _pings() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "relevo-store-ping"]


def test_a_ping_of_a_silent_database_gives_up_within_its_bound(silent_database):
    store = Store(silent_database, migrate=False)
    try:
        started = time.monotonic()
        with pytest.raises(UnavailableError, match=r"does not answer within 0\.5 s") as raised:
            store.ping(wait_s=0.5)
        assert time.monotonic() - started < 5  # not the connection's own timeout
        assert "secret" not in str(raised.value)
        for _ in range(5):  # later pings wait on the one still out, not on new threads
            with pytest.raises(UnavailableError):
                store.ping(wait_s=0.1)
        assert len(_pings()) == 1
    finally:
        store.close()


def test_a_connection_to_a_silent_database_gives_up(silent_database, monkeypatch):
    monkeypatch.setattr(store_engine, "CONNECT_TIMEOUT_S", 2)
    store = Store(silent_database, migrate=False)
    failed = threading.Event()

    def connect() -> None:
        try:
            store.engine.connect().close()
        except Exception:
            failed.set()

    try:
        threading.Thread(target=connect, daemon=True).start()
        assert failed.wait(15)
    finally:
        store.close()


def test_a_connect_timeout_in_the_url_is_kept(monkeypatch):
    import psycopg

    seen: list[dict[str, Any]] = []

    def connect(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        raise psycopg.OperationalError("not really connecting")

    monkeypatch.setattr(psycopg, "connect", connect)
    for url, expected in [
        ("postgresql://relevo@db.invalid/relevo", store_engine.CONNECT_TIMEOUT_S),
        ("postgresql://relevo@db.invalid/relevo?connect_timeout=42", "42"),
    ]:
        engine = store_engine.create_store_engine(url)
        with pytest.raises(OperationalError):
            engine.connect()
        assert str(seen[-1].get("connect_timeout")) == str(expected), seen[-1]
        engine.dispose()


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({"PGCONNECT_TIMEOUT": "3"}, "postgresql://relevo@db.invalid/relevo"),
        ({"PGSERVICE": "reporting"}, "postgresql://relevo@db.invalid/relevo"),
        ({}, "postgresql://relevo@db.invalid/relevo?service=reporting"),
    ],
)
def test_libpq_settings_of_the_timeout_are_not_overridden(monkeypatch, env, url):
    """PGCONNECT_TIMEOUT and a service file reach libpq only when relevo passes no timeout of
    its own (a keyword argument overrides them)."""
    import psycopg

    for name in ("PGCONNECT_TIMEOUT", "PGSERVICE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    seen: list[dict[str, Any]] = []

    def connect(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        raise psycopg.OperationalError("not really connecting")

    monkeypatch.setattr(psycopg, "connect", connect)
    engine = store_engine.create_store_engine(url)
    with pytest.raises(OperationalError):
        engine.connect()
    assert "connect_timeout" not in seen[-1], seen[-1]
    engine.dispose()
