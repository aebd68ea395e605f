"""A real relevo server on a free loopback port, with the churn model deployed."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import uvicorn

from relevo.registry.types import ModelVersion
from relevo.server.app import create_app
from relevo.settings import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    server: uvicorn.Server
    settings: Settings


@pytest.fixture
def deployed(rv, churn_pipeline, churn_frame) -> ModelVersion:
    version = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", version.ref, key="customer_id")
    return version


def start_server(settings: Settings) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = _free_port()
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture
def server_settings(relevo_home, database_url) -> Settings:
    return Settings(
        home=relevo_home,
        database_url=database_url,
        poll_interval_s=0.2,
        log_flush_interval_s=0.05,
    )


@pytest.fixture
def live_server(deployed, server_settings) -> Iterator[LiveServer]:
    server, thread, url = start_server(server_settings)
    try:
        yield LiveServer(url, server, server_settings)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def spawn_server() -> Iterator[Callable[[Settings], str]]:
    """Start extra servers with other settings (`spawn_server(settings) -> url`); all stop after."""
    started: list[tuple[uvicorn.Server, threading.Thread]] = []

    def spawn(settings: Settings) -> str:
        server, thread, url = start_server(settings)
        started.append((server, thread))
        return url

    yield spawn
    for server, thread in started:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A function returning a free loopback port."""
    return _free_port
