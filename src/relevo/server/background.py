"""A real relevo server (uvicorn running `create_app`) in a thread of this process.

It listens on a loopback socket bound before uvicorn starts (port 0: the system picks a free
one, and no other program can take it in between). `stop()` is a graceful shutdown: the
server's lifespan flushes the prediction log before the thread ends.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from starlette.types import ASGIApp

from relevo.client import Client
from relevo.errors import UnavailableError
from relevo.server.app import create_app
from relevo.server.protocol import uvicorn_options
from relevo.settings import Settings


class BackgroundServer:
    """A relevo server in a thread of this process: for notebooks, demos and tests."""

    def __init__(
        self,
        settings: Settings,
        host: str = "127.0.0.1",
        port: int = 0,
        app: ASGIApp | None = None,
    ) -> None:
        """`app`: another ASGI app to serve instead of relevo's (e.g. the FastAPI app alone,
        without the fast lane in front)."""
        self.settings = settings
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        bound_host, bound_port = self._socket.getsockname()[:2]
        self.url = f"http://{bound_host}:{bound_port}"
        config = uvicorn.Config(
            app if app is not None else create_app(settings, own_process=False),
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=30,
            **uvicorn_options(settings),
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name="relevo-server",
            daemon=True,
        )

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self, timeout_s: float = 30.0) -> str:
        """Start serving; returns the base URL once the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                raise UnavailableError("the relevo server stopped while starting (see the log)")
            if time.monotonic() > deadline:
                self.stop()
                raise UnavailableError(f"the relevo server did not start within {timeout_s:g} s")
            time.sleep(0.02)
        return self.url

    def wait_until_serving(self, deployment: str, model: str, timeout_s: float = 30.0) -> None:
        """Block until `/readyz` reports `deployment` served by `model` (NAME:VERSION)."""
        deadline = time.monotonic() + timeout_s
        # with tokens set, readiness shows what is served only to a token holder
        token = self.settings.admin_token or self.settings.api_token
        with Client(self.url, token=token, timeout=5.0) as client:
            while True:
                ready = client.ready()
                if ready.get("deployments", {}).get(deployment) == model:
                    return
                if time.monotonic() > deadline:
                    problems = "; ".join(ready.get("problems", [])) or "not loaded"
                    raise UnavailableError(
                        f"the server does not serve {model} as {deployment!r}: {problems}"
                    )
                time.sleep(0.05)

    def stop(self, timeout_s: float = 60.0) -> None:
        """Shut down gracefully (answers in flight finish, the prediction log flushes)."""
        if self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join(timeout=timeout_s)
        self._socket.close()
