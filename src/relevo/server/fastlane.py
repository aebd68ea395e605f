"""The fast lane: the JSON predict endpoint answered straight from ASGI.

FastAPI's per-request machinery (routing, request objects, middleware stack) costs about as much
as a micro-batched model call. The predict endpoint is the one path that must be cheap, so this
thin ASGI wrapper answers `POST /v1/deployments/{name}/predict` itself, with the same handler
the FastAPI route uses (`handle_predict`); every other request, and lifespan, goes to FastAPI.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import FastAPI

from relevo.server.app import handle_predict
from relevo.serving.runtime import Runtime

log = logging.getLogger("relevo.server")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_PREFIX = "/v1/deployments/"
_SUFFIX = "/predict"
_JSON_HEADERS = [(b"content-type", b"application/json")]
_UNAUTHORIZED_HEADERS = [*_JSON_HEADERS, (b"www-authenticate", b"Bearer")]


class FastLane:
    """ASGI app: the predict hot path directly, everything else through `app` (FastAPI)."""

    def __init__(self, app: FastAPI, runtime: Callable[[], Runtime]) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path.startswith(_PREFIX) and path.endswith(_SUFFIX):
                name = path[len(_PREFIX) : -len(_SUFFIX)]
                if name and "/" not in name:
                    await self._predict(name, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _predict(self, name: str, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        authorization = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                authorization = value.decode("latin-1")
                break
        message = await receive()
        body: bytes = message.get("body", b"")
        if message.get("more_body"):
            chunks = [body]
            while message.get("more_body"):
                message = await receive()
                chunks.append(message.get("body", b""))
            body = b"".join(chunks)
        try:
            status, payload = await handle_predict(
                self.runtime(), name, body, authorization, started
            )
        except Exception as exc:  # a model that raises, or a bug: JSON, and the traceback logged
            log.exception("POST %s failed", scope["path"])
            status = 500
            payload = orjson.dumps({"error": f"internal error: {type(exc).__name__}: {exc}"})
        headers = _UNAUTHORIZED_HEADERS if status == 401 else _JSON_HEADERS
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})
