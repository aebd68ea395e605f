"""The Open Inference Protocol V2 (KServe v2 / Triton HTTP REST) on relevo's server.

A deployment's name is its V2 model name; the version is the model version it serves. Inference
goes through `Runtime.predict`, the same path as the JSON API: validation, micro-batching, the
prediction log and the metrics all behave alike, and every answered row gets an `id` (returned
as the BYTES output `id`) that feedback can be joined on later.

Bodies are read as bytes whatever the Content-Type says; the binary tensor data extension is
supported both ways (`Inference-Header-Content-Length`). Errors are `{"error": "..."}`: 400 for
a bad request (the V2 spec's status, also for validation), 404 for an unknown model or version,
401/403 for tokens, 503 while models load.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import Response

from relevo import __version__
from relevo.errors import (
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    Problem,
    RelevoError,
)
from relevo.registry.types import ModelVersion
from relevo.server.app import BadRequest, json_response
from relevo.server.auth import Access, check
from relevo.server.v2_encode import encode_response
from relevo.server.v2_infer import model_metadata, output_array, prepare
from relevo.serving.runtime import Endpoint, Runtime

__all__ = ["HEADER_LENGTH", "model_metadata", "v2_router"]

#: the binary tensor data extension's header: the length of the JSON part of a body
HEADER_LENGTH = "Inference-Header-Content-Length"
PROTOCOL = "v2"
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


def _decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo the request's Content-Encoding (tritonclient can gzip or deflate its requests),
    refusing (413) a body that inflates past `limit` bytes."""
    if not encoding or encoding.strip().lower() == "identity":
        return body
    coding = encoding.strip().lower()
    if coding not in ("gzip", "deflate"):
        raise BadRequest(f"unsupported Content-Encoding {encoding!r}: use gzip, deflate or none")
    inflater = zlib.decompressobj(31 if coding == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"the request body is not valid {coding} data: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise PayloadTooLargeError(
            f"the request body inflates to more than {limit:,} bytes (RELEVO_MAX_BODY_MB)"
        )
    if not inflater.eof:
        raise BadRequest(f"the request body is not valid {coding} data: it is truncated")
    return out


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) one larger than `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(
                f"the request body is larger than {limit:,} bytes (RELEVO_MAX_BODY_MB)"
            )
        chunks.append(chunk)
    return b"".join(chunks)


# ------------------------------------------------------------------------------ router


def v2_router(runtime: Callable[[], Runtime]) -> APIRouter:
    """The V2 routes; `runtime` returns the server's (loaded) Runtime."""
    router = APIRouter(prefix="/v2", tags=["v2"])

    def authorized(request: Request) -> Runtime:
        rt = runtime()
        check(request.headers.get("authorization"), Access.PREDICT, rt.settings)
        return rt

    def served(rt: Runtime, name: str, version: str | None) -> Endpoint:
        endpoint = rt.endpoint(name)
        current = str(endpoint.primary.version.version)
        if version is not None and version != current:
            raise NotFoundError(
                f"model {name!r} has no version {version!r} being served (it serves version "
                f"{current})"
            )
        return endpoint

    # ---- health and server metadata ---------------------------------------------------
    @router.get("/health/live", summary="V2 server liveness.")
    async def live() -> Response:
        return json_response({"live": True})

    @router.get("/health/ready", summary="V2 server readiness: deployments loaded.")
    async def ready() -> Response:
        loaded = runtime().loaded
        return json_response({"ready": loaded}, 200 if loaded else 503)

    @router.get("", summary="V2 server metadata.")
    async def server_metadata() -> Response:
        return json_response(
            {"name": "relevo", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    # ---- model metadata and readiness -------------------------------------------------
    async def metadata(request: Request, name: str, version: str | None) -> Response:
        endpoint = served(authorized(request), name, version)
        return json_response(model_metadata(name, endpoint.primary.version))

    @router.get("/models/{name}", summary="V2 model metadata.")
    async def model_metadata_latest(name: str, request: Request) -> Response:
        return await metadata(request, name, None)

    @router.get("/models/{name}/versions/{version}", summary="V2 model metadata of a version.")
    async def model_metadata_version(name: str, version: str, request: Request) -> Response:
        return await metadata(request, name, version)

    async def model_ready(request: Request, name: str, version: str | None) -> Response:
        served(authorized(request), name, version)
        return json_response({"name": name, "ready": True})

    @router.get("/models/{name}/ready", summary="V2 model readiness.")
    async def model_ready_latest(name: str, request: Request) -> Response:
        return await model_ready(request, name, None)

    @router.get("/models/{name}/versions/{version}/ready", summary="V2 model version readiness.")
    async def model_ready_version(name: str, version: str, request: Request) -> Response:
        return await model_ready(request, name, version)

    # ---- inference ----------------------------------------------------------------------
    async def infer(request: Request, name: str, version: str | None) -> Response:
        started = time.perf_counter()
        rt = runtime()
        try:
            check(request.headers.get("authorization"), Access.PREDICT, rt.settings)
            endpoint = served(rt, name, version)
            limit = rt.settings.max_body_bytes
            body = _decompress(
                await _read_body(request, limit), request.headers.get("content-encoding"), limit
            )
            header_length = _header_length(request)
            max_rows = rt.settings.max_rows
            if len(body) >= _THREAD_BODY_BYTES:
                prepared = await asyncio.to_thread(
                    prepare, body, header_length, endpoint, name, max_rows
                )
            else:
                prepared = prepare(body, header_length, endpoint, name, max_rows)
            answer = await rt.predict(name, prepared.rows, started, protocol=PROTOCOL)
        except InvalidInputError as exc:
            # the V2 spec answers every bad request with 400 (the JSON API uses 422)
            keep = exc.http_status in (400, 413)
            bad = exc if keep else BadRequest(exc.message, exc.problems, exc.total)
            _observe_failure(rt, name, bad.http_status, started)
            raise bad from None
        except RelevoError as exc:
            _observe_failure(rt, name, exc.http_status, started)
            raise

        model = _answering_version(rt, name, answer.model, endpoint)
        outputs = [
            (out, output_array(out, model, answer.predictions), binary)
            for out, binary in prepared.outputs
        ]
        body, json_length = encode_response(
            model_name=name,
            model_version=str(model.version),
            request_id=prepared.request.id,
            outputs=outputs,
        )
        if json_length is None:
            return Response(body, media_type="application/json")
        return Response(
            body,
            media_type="application/octet-stream",
            headers={HEADER_LENGTH: str(json_length)},
        )

    @router.post("/models/{name}/infer", summary="V2 inference.")
    async def infer_latest(name: str, request: Request) -> Response:
        return await infer(request, name, None)

    @router.post("/models/{name}/versions/{version}/infer", summary="V2 inference on a version.")
    async def infer_version(name: str, version: str, request: Request) -> Response:
        return await infer(request, name, version)

    return router


def _observe_failure(rt: Runtime, name: str, status: int, started: float) -> None:
    endpoint = rt.endpoints.get(name)
    label = name if endpoint is not None else "_unknown"
    model = endpoint.primary.ref if endpoint is not None else ""
    rt.observe(label, model, PROTOCOL, status, time.perf_counter() - started)


def _answering_version(rt: Runtime, name: str, ref: str, checked: Endpoint) -> ModelVersion:
    """The version that answered (a deployment may have swapped since it was checked)."""
    if checked.primary.ref == ref:
        return checked.primary.version
    now = rt.endpoints.get(name)
    if now is not None and now.primary.ref == ref:
        return now.primary.version
    return checked.primary.version
