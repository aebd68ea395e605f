"""A real relevo server on a free loopback port, with the churn model deployed."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from relevo.registry.types import ModelVersion
from relevo.server.background import BackgroundServer
from relevo.settings import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    server: BackgroundServer
    settings: Settings


@pytest.fixture
def deployed(rv, churn_pipeline, churn_frame) -> ModelVersion:
    version = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", version.ref, key="customer_id")
    return version


def start_server(settings: Settings) -> BackgroundServer:
    server = BackgroundServer(settings)
    server.start()
    return server


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
    server = start_server(server_settings)
    try:
        yield LiveServer(server.url, server, server_settings)
    finally:
        server.stop()


@pytest.fixture
def spawn_server() -> Iterator[Callable[[Settings], str]]:
    """Start extra servers with other settings (`spawn_server(settings) -> url`); all stop after."""
    started: list[BackgroundServer] = []

    def spawn(settings: Settings) -> str:
        started.append(start_server(settings))
        return started[-1].url

    yield spawn
    for server in started:
        server.stop()


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A function returning a free loopback port."""
    return _free_port
