"""The Open Inference Protocol V2's HTTP routes: tokens, body reading, and the answers.

The token is checked and the model looked up from the headers and the path before a byte of the
body is read; the body then comes through the shared bounded reader (and is inflated under the
same limit). Errors keep the protocol's shape `{"error": "..."}` (400 for any bad request).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from relevo import __version__
from relevo.errors import InvalidInputError, NotFoundError, Problem
from relevo.registry.types import ModelVersion
from relevo.server import openapi
from relevo.server.auth import Access, check
from relevo.server.http import (
    BadRequest,
    authorization,
    decompress,
    error_body,
    error_headers,
    json_response,
    read_body,
)
from relevo.server.v2 import HEADER_LENGTH, PROTOCOL
from relevo.server.v2_encode import encode_response
from relevo.server.v2_infer import output_array, prepare
from relevo.server.v2_metadata import model_metadata
from relevo.serving.health import Readiness, check_readiness, observe_failure
from relevo.serving.runtime import Endpoint, Runtime

__all__ = ["v2_router"]

#: request bodies at least this large are decoded in a worker thread, off the event loop
_THREAD_BODY_BYTES = 256 * 1024


def _header_length(request: Request) -> int | None:
    raw = request.headers.get(HEADER_LENGTH)
    if raw is None:
        return None
    try:
        return int(raw.strip())
    except ValueError:
        raise BadRequest(
            f"invalid {HEADER_LENGTH}",
            [Problem(f"not an integer: {raw!r}", column=HEADER_LENGTH)],
        ) from None


# ------------------------------------------------------------------------------ router


def v2_router(
    runtime: Callable[[], Runtime],
    readiness: Callable[[Runtime], Awaitable[Readiness]] | None = None,
) -> APIRouter:
    """The V2 routes; `runtime` returns the server's (loaded) Runtime; `readiness`: the check
    `/readyz` makes too (draining included), `check_readiness` in a worker thread when none."""
    router = APIRouter(prefix="/v2", tags=["v2"])

    async def ready_now(rt: Runtime) -> Readiness:
        if readiness is not None:
            return await readiness(rt)
        return await asyncio.to_thread(check_readiness, rt)

    def authorized(request: Request) -> Runtime:
        rt = runtime()
        check(authorization(request.scope), Access.PREDICT, rt.settings)
        return rt

    def served(rt: Runtime, name: str, version: str | None) -> Endpoint:
        endpoint = rt.endpoint(name)
        current = str(endpoint.primary.version.version)
        if version is not None and version != current:
            raise NotFoundError(
                f"model {name!r} has no version {version[:40]!r} being served (it serves "
                f"version {current})"
            )
        return endpoint

    # ---- health and server metadata ---------------------------------------------------
    @router.get(
        "/health/live",
        summary="V2 server liveness.",
        responses=openapi.ok(openapi.obj("live", live={"type": "boolean"})),
    )
    async def live() -> Response:
        return json_response({"live": True})

    @router.get(
        "/health/ready",
        summary="V2 server readiness: the same check as /readyz.",
        responses={
            **openapi.ok(openapi.obj("ready", ready={"type": "boolean"})),
            503: {
                "description": "Not ready.",
                "content": {openapi.JSON: {"schema": openapi.obj("ready")}},
            },
        },
    )
    async def ready() -> Response:
        state = await ready_now(runtime())
        return json_response({"ready": state.ready}, state.status)

    @router.get(
        "",
        summary="V2 server metadata.",
        responses=openapi.ok(openapi.obj("name", "version", "extensions")),
    )
    async def server_metadata() -> Response:
        return json_response(
            {"name": "relevo", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    # ---- model metadata and readiness -------------------------------------------------
    metadata_doc = {
        **openapi.ok(openapi.obj("name", "versions", "platform", "inputs", "outputs")),
        **openapi.errors(401, 403, 404, 503, v2=True),
    }
    ready_doc = {
        **openapi.ok(openapi.obj("name", "ready", ready={"type": "boolean"})),
        **openapi.errors(401, 403, 404, 503, v2=True),
    }

    async def metadata(request: Request, name: str, version: str | None) -> Response:
        endpoint = served(authorized(request), name, version)
        return json_response(model_metadata(name, endpoint.primary.version))

    @router.get("/models/{name}", summary="V2 model metadata.", responses=metadata_doc)
    async def model_metadata_latest(name: str, request: Request) -> Response:
        return await metadata(request, name, None)

    @router.get(
        "/models/{name}/versions/{version}",
        summary="V2 model metadata of a version.",
        responses=metadata_doc,
    )
    async def model_metadata_version(name: str, version: str, request: Request) -> Response:
        return await metadata(request, name, version)

    async def model_ready(request: Request, name: str, version: str | None) -> Response:
        served(authorized(request), name, version)
        return json_response({"name": name, "ready": True})

    @router.get("/models/{name}/ready", summary="V2 model readiness.", responses=ready_doc)
    async def model_ready_latest(name: str, request: Request) -> Response:
        return await model_ready(request, name, None)

    @router.get(
        "/models/{name}/versions/{version}/ready",
        summary="V2 model version readiness.",
        responses=ready_doc,
    )
    async def model_ready_version(name: str, version: str, request: Request) -> Response:
        return await model_ready(request, name, version)

    # ---- inference ----------------------------------------------------------------------
    async def infer(request: Request, name: str, version: str | None) -> Response:
        started = time.perf_counter()
        rt = runtime()
        body_read = False
        try:
            # the token and the model first: a refused request costs no body read
            check(authorization(request.scope), Access.PREDICT, rt.settings)
            endpoint = served(rt, name, version)
            limit = rt.settings.max_body_bytes
            raw = await read_body(request.scope, request.receive, limit)
            body_read = True
            body = decompress(raw, request.headers.get("content-encoding"), limit)
            header_length = _header_length(request)
            max_rows = rt.settings.max_rows
            if len(body) >= _THREAD_BODY_BYTES:
                prepared = await asyncio.to_thread(
                    prepare, body, header_length, endpoint, name, max_rows
                )
            else:
                prepared = prepare(body, header_length, endpoint, name, max_rows)
            answer = await rt.predict(
                name, prepared.rows, started, protocol=PROTOCOL, force=_pinned(endpoint, version)
            )
            model = _answering_version(rt, name, answer.model, endpoint)
            # a RelevoError here: an answer the V2 tensors cannot carry (a row without a label
            # in an INT64 label tensor)
            outputs = [
                (out, output_array(out, model, answer.predictions), binary)
                for out, binary in prepared.outputs
            ]
        except Exception as exc:
            if isinstance(exc, InvalidInputError) and exc.http_status not in (400, 413):
                # the V2 spec answers every bad request with 400 (the JSON API uses 422)
                exc = BadRequest(exc.message, exc.problems, exc.total)
            status, error = error_body(exc, f"POST {request.url.path}", v2=True)
            observe_failure(rt, name, PROTOCOL, status, started)
            return json_response(error, status, error_headers(status, not body_read))

        body, json_length = encode_response(
            model_name=name,
            model_version=str(model.version),
            request_id=prepared.request.id,
            outputs=outputs,
            parameters=_split_models(answer.predictions, answer.model),
        )
        if json_length is None:
            return Response(body, media_type="application/json")
        return Response(
            body,
            media_type="application/octet-stream",
            headers={HEADER_LENGTH: str(json_length)},
        )

    infer_doc: dict[str, Any] = {
        "openapi_extra": openapi.request_body(openapi.V2_INFER_BODY, binary=True),
        "responses": {
            200: {
                "description": "The outputs (binary with Inference-Header-Content-Length).",
                "content": {
                    openapi.JSON: {"schema": openapi.obj("model_name", "outputs")},
                    "application/octet-stream": {"schema": {"type": "string"}},
                },
            },
            **openapi.errors(400, 401, 403, 404, 413, 503, v2=True),
        },
    }

    @router.post("/models/{name}/infer", summary="V2 inference.", **infer_doc)
    async def infer_latest(name: str, request: Request) -> Response:
        return await infer(request, name, None)

    @router.post(
        "/models/{name}/versions/{version}/infer", summary="V2 inference on a version.", **infer_doc
    )
    async def infer_version(name: str, version: str, request: Request) -> Response:
        return await infer(request, name, version)

    return router


def _pinned(endpoint: Endpoint, version: str | None) -> int | None:
    """The model every row of a V2 request goes to, or None for the deployment's routing: the
    champion when the client named its version (`/versions/{v}/infer` runs on that version),
    or when the challenger's outputs differ from the champion's (another task, other classes):
    a V2 answer has one tensor per output for all its rows."""
    if len(endpoint.runners) < 2:
        return None
    if version is not None:
        return 0
    champion, challenger = endpoint.runners[0].version, endpoint.runners[1].version
    same = champion.task == challenger.task and list(champion.classes or ()) == list(
        challenger.classes or ()
    )
    return None if same else 0


def _answering_version(rt: Runtime, name: str, ref: str, checked: Endpoint) -> ModelVersion:
    """The version that answered (a deployment may have swapped since it was checked)."""
    if checked.primary.ref == ref:
        return checked.primary.version
    now = rt.endpoints.get(name)
    if now is not None and now.primary.ref == ref:
        return now.primary.version
    return checked.primary.version


def _split_models(predictions: list[dict[str, Any]], champion: str) -> dict[str, Any] | None:
    """`{"models": "NAME:VERSION,NAME:VERSION,..."}` (one per row, in order) when some rows were
    answered by another model than the champion (a canary split them); None when the champion
    answered the whole batch. One string: the spec's parameter values are strings, numbers and
    booleans, and a model's name holds no comma."""
    models = [p["model"] for p in predictions]
    if all(m == champion for m in models):
        return None
    return {"models": ",".join(models)}
