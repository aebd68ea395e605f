"""The HTTP door: a FastAPI app that translates requests into calls on the serving runtime.

No domain logic lives here. Errors from the core are mapped to statuses once (`_error`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from relevo import __version__
from relevo.context import Relevo
from relevo.errors import InvalidInputError, Problem, RelevoError
from relevo.server.auth import Access, check
from relevo.serving.log import PredictionLog
from relevo.serving.metrics import get_metrics, render_metrics
from relevo.serving.runtime import Runtime
from relevo.settings import Settings, get_settings

if TYPE_CHECKING:
    from relevo.server.fastlane import FastLane

log = logging.getLogger("relevo.server")

JSON = "application/json"


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON, headers=headers)


def error_body(exc: RelevoError) -> dict[str, Any]:
    body: dict[str, Any] = {"error": str(exc)}
    if isinstance(exc, InvalidInputError) and exc.problems:
        body["message"] = exc.message
        body["problems"] = [p.to_dict() for p in exc.problems]
    return body


def parse_json(body: bytes) -> Any:
    """The request body as JSON, or a 400 naming what is wrong."""
    if not body:
        raise BadRequest("the request body is empty: send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        text = str(exc)
        where = text[text.rfind(": line ") + 2 :] if ": line " in text else text
        if re.search(rb"\b(NaN|-?Infinity)\b", body):
            raise BadRequest(
                f"the request body is not valid JSON ({where}): NaN and Infinity are not JSON "
                "numbers; send null for a missing value"
            ) from None
        raise BadRequest(f"the request body is not valid JSON ({where})") from None


class BadRequest(InvalidInputError):
    http_status = 400


def create_app(
    settings: Settings | None = None, relevo: Relevo | None = None, own_process: bool = True
) -> FastLane:
    """The relevo server as an ASGI app: the predict fast lane in front of the FastAPI app.

    `relevo serve` runs it in processes of its own (`own_process`): then the interpreter is
    tuned for serving. A server inside someone else's process (a notebook, the demo, tests)
    leaves the interpreter's settings alone.
    """
    from relevo.server.fastlane import FastLane

    if own_process:
        # Under load the model runs in a worker thread while the event loop reads requests;
        # with CPython's default 5 ms GIL switch interval the loop waits whole model calls for
        # its turn and batches stay small. 0.5 ms lets it read requests meanwhile: +3-20 %
        # requests/s at c=32 here, side by side (benchmarks/serving.py), no change at c=1.
        sys.setswitchinterval(0.0005)
    app, runtime = create_fastapi_app(settings, relevo, freeze_heap=own_process)
    return FastLane(app, runtime)


def create_fastapi_app(
    settings: Settings | None = None, relevo: Relevo | None = None, freeze_heap: bool = False
) -> tuple[FastAPI, Callable[[], Runtime]]:
    """The FastAPI app (every endpoint, OpenAPI) and the getter of its serving runtime."""
    settings = settings or get_settings()
    holder: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rv: Relevo = (
            relevo if relevo is not None else await asyncio.to_thread(Relevo, settings=settings)
        )
        metrics = get_metrics()
        plog = None
        if rv.settings.log_predictions:
            plog = PredictionLog(
                rv.store.predictions.insert_many,
                capacity_rows=rv.settings.log_queue_rows,
                flush_rows=rv.settings.log_flush_rows,
                flush_interval_s=rv.settings.log_flush_interval_s,
                on_written=metrics.log_written.inc,
                on_error=metrics.log_errors.inc,
                dead_letter=rv.settings.dead_letter_path,
            )
        runtime = Runtime(rv, prediction_log=plog, metrics=metrics, freeze_heap=freeze_heap)
        try:
            await asyncio.to_thread(runtime.refresh)
        except RelevoError as exc:
            log.error("loading deployments failed: %s", exc)
        holder["runtime"] = runtime
        watcher = asyncio.create_task(runtime.watch())
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if plog is not None:
                # everything answered is stored before the process goes
                await asyncio.to_thread(plog.close)
                log.info("prediction log flushed: %d rows written", plog.rows_written)
            if relevo is None:
                rv.close()

    app = FastAPI(
        title="relevo",
        version=__version__,
        description="Model serving with a prediction log, metrics and the Open Inference "
        "Protocol V2.",
        lifespan=lifespan,
    )

    @app.exception_handler(RelevoError)
    async def _error(request: Request, exc: RelevoError) -> Response:
        status = exc.http_status
        if status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if request.url.path.startswith("/v2/"):
            return json_response({"error": str(exc)}, status, headers)
        return json_response(error_body(exc), status, headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers) if exc.headers else None
        return json_response({"error": str(exc.detail)}, exc.status_code, headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # a model that raises, or a bug: the client gets JSON and the log gets the traceback
        log.exception("%s %s failed", request.method, request.url.path)
        return json_response({"error": f"internal error: {type(exc).__name__}: {exc}"}, 500)

    def runtime() -> Runtime:
        return holder["runtime"]

    # ---- health and metrics ---------------------------------------------------------------
    @app.get("/healthz", tags=["health"], summary="Liveness: the process answers.")
    async def healthz() -> Response:
        return json_response({"status": "ok", "live": True})

    @app.get("/readyz", tags=["health"], summary="Readiness: store reachable, models loaded.")
    async def readyz() -> Response:
        rt = runtime()
        problems = []
        try:
            await asyncio.to_thread(rt.relevo.store.ping)
        except RelevoError as exc:
            problems.append(str(exc))
        if not rt.loaded:
            problems.append("deployments are not loaded yet")
        elif rt.failures and not rt.endpoints:
            problems.append("no deployment can serve")
        # a deployment that cannot load is reported, but does not take the healthy ones out
        # of service: replicas stay in the load balancer for what they can answer
        failing = {name: str(failure) for name, failure in rt.failures.items()}
        body = {
            "ready": not problems,
            "deployments": {n: e.primary.ref for n, e in rt.endpoints.items()},
        }
        if failing:
            body["failing"] = failing
        if problems:
            body["problems"] = problems
        return json_response(body, 200 if not problems else 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics (text format).")
    async def metrics() -> Response:
        rt = runtime()
        m = get_metrics()
        m.sample_process()
        if rt.log is not None:
            m.log_depth.set(rt.log.depth)
            m.log_dead_letter.set(rt.log.dead_lettered)
        data, content_type = await asyncio.to_thread(render_metrics)
        return Response(data, media_type=content_type)

    # ---- JSON prediction API ------------------------------------------------------------
    predict_schema = {
        "requestBody": {
            "required": True,
            "content": {
                JSON: {
                    "schema": {
                        "type": "object",
                        "required": ["instances"],
                        "properties": {
                            "instances": {
                                "type": "array",
                                "minItems": 1,
                                "items": {"type": "object", "additionalProperties": True},
                            }
                        },
                    },
                    "example": {
                        "instances": [
                            {
                                "age": 42,
                                "tenure_months": 5,
                                "contract": "month-to-month",
                                "monthly_charges": 89.5,
                                "payment_method": "electronic check",
                                "internet_service": "fiber",
                                "support_calls": 3,
                                "region": "north",
                                "satisfaction": 2.0,
                            }
                        ]
                    },
                }
            },
        }
    }

    @app.post(
        "/v1/deployments/{name}/predict",
        tags=["predict"],
        summary="Score rows with the deployment's live model.",
        openapi_extra=predict_schema,
    )
    async def predict(name: str, request: Request) -> Response:
        # normally answered by the fast lane (relevo.server.fastlane) before FastAPI sees it;
        # this route documents the endpoint and serves apps mounted without the lane
        status, body = await handle_predict(
            runtime(),
            name,
            await request.body(),
            request.headers.get("authorization"),
            time.perf_counter(),
        )
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return Response(body, status_code=status, media_type=JSON, headers=headers)

    from relevo.server.admin import admin_router
    from relevo.server.v2 import v2_router

    app.include_router(admin_router(runtime))
    app.include_router(v2_router(runtime))
    return app, runtime


async def handle_predict(
    rt: Runtime, name: str, body: bytes, authorization: str | None, started: float
) -> tuple[int, bytes]:
    """The JSON predict endpoint, transport aside: (status, JSON body)."""
    try:
        check(authorization, Access.PREDICT, rt.settings)
        payload = parse_json(body)
        if type(payload) is not dict or "instances" not in payload:
            raise InvalidInputError(
                "the body must be a JSON object with an 'instances' list",
                [Problem("field required", column="instances")],
            )
        answer = await rt.predict(name, payload["instances"], started)
    except RelevoError as exc:
        label = name if name in rt.endpoints else "_unknown"
        rt.observe(label, _model_of(rt, name), "v1", exc.http_status, time.perf_counter() - started)
        if exc.http_status >= 500:
            log.error("predict on %r failed: %s", name, exc)
        return exc.http_status, orjson.dumps(error_body(exc))
    return 200, orjson.dumps({"predictions": answer.predictions})


def _model_of(rt: Runtime, name: str) -> str:
    endpoint = rt.endpoints.get(name)
    return endpoint.primary.ref if endpoint is not None else ""
