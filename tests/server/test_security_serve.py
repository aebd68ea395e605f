"""Issue 18 item 6: `relevo serve` beyond loopback needs tokens (or `--insecure`), and uvicorn
runs with a header cap, a concurrency limit and short keep-alives."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from rawhttp import endless_header

from relevo.server.protocol import uvicorn_options
from relevo.settings import Settings


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "my-host.example"])
def test_serving_beyond_loopback_without_tokens_is_refused(cli, host):
    result = cli("serve", "--host", host, "--port", "1")
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert f"refusing to serve on {host} without tokens" in message
    assert "RELEVO_API_TOKEN" in message and "--insecure" in message
    assert "relevo serving on" not in result.stdout
    assert "Traceback" not in result.output


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another socket listens on: `serve` past its checks stops there."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_needs_no_token(cli, host, taken_port):
    # past the exposure check, the port in use ends the command: exit 6, not 2
    result = cli("serve", "--host", host, "--port", str(taken_port))
    assert "refusing to serve" not in result.output
    assert result.exit_code == 6, result.output
    assert "cannot listen" in result.stderr


def test_a_token_lets_the_server_listen_beyond_loopback(cli, monkeypatch, taken_port):
    monkeypatch.setenv("RELEVO_API_TOKEN", "t")
    result = cli("serve", "--host", "0.0.0.0", "--port", str(taken_port))
    assert "refusing to serve" not in result.output
    assert result.exit_code == 6, result.output
    assert "cannot listen" in result.stderr


@pytest.mark.parametrize(
    ("setting", "token", "kind", "position"),
    [
        ("RELEVO_API_TOKEN", "pässwörd", "non-ASCII", 2),  # curl sends UTF-8, httpx refuses
        ("RELEVO_ADMIN_TOKEN", "s3cret-€uro", "non-ASCII", 8),  # past latin-1: never sent
        ("RELEVO_API_TOKEN", "s3cret\x01token", "control", 7),  # a header parser answers 400
        ("RELEVO_ADMIN_TOKEN", "s3cret\x7f", "control", 7),
    ],
)
def test_a_token_no_header_can_carry_is_refused_at_start(
    cli, monkeypatch, taken_port, setting, token, kind, position
):
    # the server started and answered every request 401 (or 400), however the token was sent
    monkeypatch.setenv(setting, token)
    result = cli("serve", "--port", str(taken_port))
    assert result.exit_code == 1, result.output
    message = " ".join(result.stderr.split())
    assert message.startswith(
        f"Error: invalid setting {setting}: it has a {kind} character (at position {position}), "
        "which an HTTP header cannot carry"
    )
    assert token not in result.output and "Traceback" not in result.output
    assert "cannot listen" not in result.output


def test_a_token_with_spaces_inside_and_around_is_served_as_sent(
    deployed, server_settings, spawn_server, monkeypatch
):
    monkeypatch.setenv("RELEVO_API_TOKEN", " \tmy secret\ttoken \n")
    read = Settings()
    assert read.api_token == "my secret\ttoken"  # a header carries inner spaces and tabs
    url = spawn_server(server_settings.model_copy(update={"api_token": read.api_token}))
    headers = {"Authorization": "Bearer my secret\ttoken"}
    assert httpx.get(f"{url}/v1/deployments", headers=headers).status_code == 200


def test_headers_over_the_cap_are_refused(live_server):
    # a server without a cap would read the endless header forever (and time out here)
    status, _ = endless_header(live_server.url, "/healthz", total=4 * 1024 * 1024)
    assert status in (431, None)  # refused with 431, or cut off before it could answer
    normal = httpx.get(f"{live_server.url}/healthz", headers={"X-Fine": "a" * 8192})
    assert normal.status_code == 200


def test_uvicorn_runs_with_relevos_limits():
    options = uvicorn_options(
        Settings(limit_concurrency=7, max_header_kb=8, keep_alive_s=3), proxy_headers=False
    )
    assert options["limit_concurrency"] == 7
    assert options["h11_max_incomplete_event_size"] == 8 * 1024
    assert options["timeout_keep_alive"] == 3
    assert options["proxy_headers"] is False


@pytest.mark.slow
def test_an_insecure_open_server_warns_and_caps_headers(
    deployed, relevo_home, database_url, free_port
):
    port = free_port()
    env = {
        **os.environ,
        "RELEVO_HOME": str(relevo_home),
        "RELEVO_DATABASE_URL": database_url,
        "RELEVO_MAX_HEADER_KB": "8",
    }
    command = [sys.executable, "-m", "relevo", "serve", "--host", "0.0.0.0", "--insecure"]
    proc = subprocess.Popen(
        [*command, "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        big = httpx.get(f"{url}/healthz", headers={"X-Big": "a" * 16 * 1024})
        assert big.status_code == 431
        assert httpx.get(f"{url}/healthz", headers={"X-Ok": "a" * 4096}).status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    text = " ".join(output.decode().split())
    assert "without tokens (--insecure)" in text
