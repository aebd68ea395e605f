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
from dataclasses import dataclass
from typing import Any

import numpy as np
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
from relevo.server.v2_columns import tensors_to_columns
from relevo.server.v2_decode import decode_request
from relevo.server.v2_encode import encode_response
from relevo.server.v2_types import V2Request, V2Tensor, numpy_dtype_of
from relevo.serving.runtime import Endpoint, Runtime

__all__ = ["HEADER_LENGTH", "model_metadata", "v2_router"]

#: the binary tensor data extension's header: the length of the JSON part of a body
HEADER_LENGTH = "Inference-Header-Content-Length"
PROTOCOL = "v2"
#: request bodies at least this large are decoded in a worker thread, off the event loop
_THREAD_BODY_BYTES = 256 * 1024

_KIND_DATATYPES = {"number": "FP64", "integer": "INT64", "boolean": "BOOL", "string": "BYTES"}


# ---------------------------------------------------------------------------- metadata


def _label_datatype(classes: list[Any] | None) -> str:
    """The V2 datatype of a classifier's `label` output, from the type of its classes."""
    if not classes:
        return "BYTES"
    if all(isinstance(c, (bool, np.bool_)) for c in classes):
        return "BOOL"
    if all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in classes):
        return "INT64"
    if all(isinstance(c, (int, float, np.integer, np.floating)) for c in classes):
        return "FP64"
    return "BYTES"


def _outputs_of(version: ModelVersion) -> list[dict[str, Any]]:
    """The output tensors a model answers with, in their default order."""
    ident = {"name": "id", "datatype": "BYTES", "shape": [-1]}
    if version.task == "regression":
        return [{"name": "value", "datatype": "FP64", "shape": [-1]}, ident]
    label = {"name": "label", "datatype": _label_datatype(version.classes), "shape": [-1]}
    if version.task == "binary":
        return [{"name": "probability", "datatype": "FP64", "shape": [-1]}, label, ident]
    k = len(version.classes or ())
    return [{"name": "probabilities", "datatype": "FP64", "shape": [-1, k]}, label, ident]


def model_metadata(name: str, version: ModelVersion) -> dict[str, Any]:
    """The V2 model metadata of deployment `name` serving `version`."""
    return {
        "name": name,
        "versions": [str(version.version)],
        "platform": f"relevo-{version.flavor}",
        "inputs": [
            {"name": c.name, "datatype": _KIND_DATATYPES[c.kind], "shape": [-1]}
            for c in version.signature.columns
        ],
        "outputs": _outputs_of(version),
    }


# ------------------------------------------------------------------------------- infer


@dataclass
class _Prepared:
    request: V2Request
    rows: list[dict[str, Any]]
    #: (output name, binary?) in response order
    outputs: list[tuple[str, bool]]


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


def _plan_outputs(req: V2Request, version: ModelVersion, name: str) -> list[tuple[str, bool]]:
    """Which outputs to send, in which order and how: the requested ones, else all of them."""
    known = [o["name"] for o in _outputs_of(version)]
    if not req.outputs:
        return [(o, req.binary_output_default) for o in known]
    problems = []
    for out in req.outputs:
        if out.name not in known:
            problems.append(
                Problem(
                    f"unknown output {out.name!r}: model {name!r} has outputs {', '.join(known)}",
                    column=out.name,
                )
            )
        elif "classification" in out.parameters:
            problems.append(
                Problem(
                    f"output {out.name!r}: the classification extension is not supported "
                    "(request 'label' or 'probabilities' instead)",
                    column=out.name,
                )
            )
    if problems:
        raise BadRequest("invalid requested outputs", problems)
    return [(o.name, o.binary) for o in req.outputs]


def _key_values(tensor: V2Tensor) -> list[Any]:
    """The routing key tensor as Python values (str or int; validation judges the rest)."""
    data = tensor.data
    if data.ndim == 2 and data.shape[1] == 1:
        data = data[:, 0]
    elif data.ndim != 1:
        raise BadRequest(
            "the routing key tensor has the wrong shape",
            [
                Problem(
                    f"tensor {tensor.name!r} has shape {list(data.shape)}; the routing key "
                    "needs [n] or [n, 1]",
                    column=tensor.name,
                )
            ],
        )
    values = data.tolist()
    if data.dtype.kind != "O":
        return values
    out: list[Any] = []
    for i, v in enumerate(values):
        if isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest(
                    "the routing key is not text",
                    [Problem("not valid UTF-8 text", row=i, column=tensor.name)],
                ) from None
        out.append(v)
    return out


def _column_values(array: np.ndarray) -> list[Any]:
    """A decoded column as Python values, missing values (NaN) as None for validation."""
    values = array.tolist()
    if array.dtype.kind == "f" and np.isnan(array).any():
        return [None if v != v else v for v in values]
    return values


def _reject_infinity(columns: dict[str, np.ndarray]) -> None:
    """Binary FP64 (and lenient JSON) can carry infinities, which no model should see."""
    problems: list[Problem] = []
    for col, arr in columns.items():
        if arr.dtype.kind == "f":
            rows = np.flatnonzero(np.isinf(arr))
            problems.extend(
                Problem("not a finite number", row=int(r), column=col) for r in rows[:20]
            )
    if problems:
        raise BadRequest("the inputs hold infinite values", problems)


def _prepare(
    body: bytes, header_length: int | None, endpoint: Endpoint, name: str, max_rows: int
) -> _Prepared:
    """Decode a request and turn its tensors into the rows `Runtime.predict` validates."""
    runner = endpoint.primary
    try:
        req = decode_request(body, header_length, max_rows=max_rows)
    except PayloadTooLargeError:
        raise
    except InvalidInputError as exc:
        raise BadRequest(exc.message, exc.problems) from None
    outputs = _plan_outputs(req, runner.version, name)

    signature = runner.signature
    key_column = endpoint.deployment.key_column
    inputs = req.inputs
    key_tensor = None
    if key_column is not None and key_column not in signature:
        key_tensor = next((t for t in inputs if t.name == key_column), None)
        if key_tensor is not None:
            inputs = [t for t in inputs if t is not key_tensor]
    if not inputs:
        raise BadRequest(
            "no feature tensors",
            [Problem(f"send the model's columns: {', '.join(signature.names)}", column="inputs")],
        )
    try:
        columns = tensors_to_columns(inputs, [(c.name, c.kind) for c in signature.columns])
    except InvalidInputError as exc:
        raise BadRequest(exc.message, exc.problems) from None

    _reject_infinity(columns)
    values = {col: _column_values(arr) for col, arr in columns.items()}
    n = len(next(iter(values.values()))) if values else 0
    if key_tensor is not None:
        keys = _key_values(key_tensor)
        if len(keys) != n:
            raise BadRequest(
                "the routing key tensor does not match the features",
                [
                    Problem(
                        f"{len(keys)} routing keys for {n} rows",
                        column=key_tensor.name,
                    )
                ],
            )
        values[key_tensor.name] = keys
    if n == 0:
        raise BadRequest(
            "the input tensors have no rows",
            [Problem("send at least one row (shape [n] with n >= 1)", column="inputs")],
        )
    names = list(values)
    rows = [dict(zip(names, row, strict=True)) for row in zip(*values.values(), strict=True)]
    return _Prepared(req, rows, outputs)


def _output_array(name: str, version: ModelVersion, predictions: list[dict[str, Any]]) -> Any:
    if name == "id":
        ids = np.empty(len(predictions), dtype=object)
        ids[:] = [p["id"] for p in predictions]
        return ids
    if name in ("probability", "value"):
        return np.asarray([p[name] for p in predictions], dtype=np.float64)
    if name == "probabilities":
        keys = [str(c) for c in version.classes or ()]
        probs = np.asarray(
            [[p["probabilities"][k] for k in keys] for p in predictions], dtype=np.float64
        )
        return probs.reshape(len(predictions), len(keys))
    # label
    labels = [p["label"] for p in predictions]
    datatype = _label_datatype(version.classes)
    if datatype == "BYTES":
        out = np.empty(len(labels), dtype=object)
        out[:] = [str(x) for x in labels]
        return out
    return np.asarray(labels, dtype=numpy_dtype_of(datatype))


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
                    _prepare, body, header_length, endpoint, name, max_rows
                )
            else:
                prepared = _prepare(body, header_length, endpoint, name, max_rows)
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
            (out, _output_array(out, model, answer.predictions), binary)
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
