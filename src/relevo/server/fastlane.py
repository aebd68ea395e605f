"""The fast lane: the JSON predict endpoint answered straight from ASGI.

FastAPI's per-request machinery (routing, request objects, middleware stack) costs about as much
as a micro-batched model call. The predict endpoint is the one path that must be cheap, so this
thin ASGI wrapper answers `POST /v1/deployments/{name}/predict` itself, with the same handler
the FastAPI route uses (`relevo.server.predict`); every other request, and lifespan, goes to
FastAPI.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from relevo.server.auth import foreign
from relevo.server.predict import predict_asgi
from relevo.serving.runtime import Runtime

_PREFIX = "/v1/deployments/"
_SUFFIX = "/predict"


class FastLane:
    """ASGI app: the predict hot path directly, everything else through `app` (FastAPI)."""

    def __init__(self, app: FastAPI, runtime: Callable[[], Runtime]) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            rt = self.runtime()
            if rt.settings.api_token is None:
                # something is open without a token: not to another site's page (`foreign`)
                why = foreign(scope)
                if why is not None:
                    await _refuse(send, why)
                    return
            if scope["method"] == "POST":
                path: str = scope["path"]
                if path.startswith(_PREFIX) and path.endswith(_SUFFIX):
                    name = path[len(_PREFIX) : -len(_SUFFIX)]
                    if name and "/" not in name:
                        await predict_asgi(rt, name, scope, receive, send)
                        return
        await self.app(scope, receive, send)


async def _refuse(send: Send, why: str) -> None:
    body = orjson.dumps({"error": f"cross-site request refused: {why}"})
    headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": body})
