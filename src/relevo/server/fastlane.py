"""The fast lane: the JSON predict endpoint answered straight from ASGI.

FastAPI's per-request machinery (routing, request objects, middleware stack) costs about as much
as a micro-batched model call. The predict endpoint is the one path that must be cheap, so this
thin ASGI wrapper answers `POST /v1/deployments/{name}/predict` itself, with the same handler
the FastAPI route uses (`handle_predict`); every other request, and lifespan, goes to FastAPI.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import orjson
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from relevo.errors import PayloadTooLargeError
from relevo.server.app import _model_of, error_body, handle_predict
from relevo.serving.runtime import Runtime

log = logging.getLogger("relevo.server")


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
        rt = self.runtime()
        try:
            body = await _read_body(receive, rt.settings.max_body_bytes)
            status, payload = await handle_predict(rt, name, body, authorization, started)
        except PayloadTooLargeError as exc:
            status, payload = exc.http_status, orjson.dumps(error_body(exc))
        except Exception as exc:  # a model that raises, or a bug: JSON, and the traceback logged
            log.exception("POST %s failed", scope["path"])
            status = 500
            payload = orjson.dumps({"error": f"internal error: {type(exc).__name__}: {exc}"})
            label = name if name in rt.endpoints else "_unknown"
            rt.observe(label, _model_of(rt, name), "v1", 500, time.perf_counter() - started)
        headers = _UNAUTHORIZED_HEADERS if status == 401 else _JSON_HEADERS
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing (413) one larger than `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(
                f"the request body is larger than {limit:,} bytes (RELEVO_MAX_BODY_MB)"
            )
        chunks.append(chunk)
        more = bool(message.get("more_body"))
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
