"""The probes while the database hangs: it accepts connections and never answers (a network
partition). /readyz answers 503 within its bound, and neither it nor a pile of waiting probes
holds /metrics or the admin reads."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.engine import Engine

from relevo.store import PING_WAIT_S, Store

#: more readiness probes than asyncio's default thread pool has threads
PROBES = min(32, (os.cpu_count() or 1) + 4) + 2


def _probe_impatiently(url: str) -> None:
    """Readiness probes that give up before the answer, as a kubelet's would."""
    for _ in range(PROBES):
        with contextlib.suppress(httpx.TimeoutException):
            httpx.get(f"{url}/readyz", timeout=0.3)


@pytest.fixture
def hung_database(monkeypatch) -> Iterator[None]:
    """Every new use of a database connection in this process waits until the test ends."""
    released = threading.Event()
    connect = Engine.connect

    def hang(self):
        released.wait(60)
        return connect(self)

    monkeypatch.setattr(Engine, "connect", hang)
    try:
        yield
    finally:
        released.set()


def test_metrics_and_admin_reads_answer_while_readiness_probes_wait_on_a_hung_ping(
    live_server, monkeypatch
):
    hung = threading.Event()
    monkeypatch.setattr(Store, "ping", lambda self, wait_s=PING_WAIT_S: hung.wait(60))
    try:
        _probe_impatiently(live_server.url)
        assert httpx.get(f"{live_server.url}/metrics", timeout=5).status_code == 200
        status = httpx.get(f"{live_server.url}/v1/deployments/churn/status", timeout=5)
        assert status.status_code == 200
    finally:
        hung.set()


def test_readiness_answers_503_within_its_bound_while_the_database_hangs(
    live_server, hung_database
):
    ready = httpx.get(f"{live_server.url}/readyz", timeout=PING_WAIT_S + 3)
    assert ready.status_code == 503
    assert ready.json()["problems"] == ["the database does not answer"]


def test_readiness_probes_share_one_ping_of_a_hung_database(live_server, hung_database):
    _probe_impatiently(live_server.url)
    pings = [t for t in threading.enumerate() if t.name == "relevo-store-ping"]
    assert len(pings) == 1
    assert httpx.get(f"{live_server.url}/metrics", timeout=5).status_code == 200
    ready = httpx.get(f"{live_server.url}/readyz", timeout=PING_WAIT_S + 3)
    assert ready.status_code == 503
