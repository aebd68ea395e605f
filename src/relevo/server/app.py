"""The composition root of the HTTP door: the serving runtime's lifespan, the routers and the
error handlers put together. Nothing imports this module back; the routes live in `predict`,
`admin`, `v2_routes` and `probes`, the shared helpers in `http`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from relevo import __version__
from relevo.context import Relevo
from relevo.errors import RelevoError
from relevo.monitoring.alerts import evaluator as monitor
from relevo.monitoring.alerts.service import AlertService
from relevo.routing import evaluator
from relevo.server import openapi
from relevo.server.admin import admin_router
from relevo.server.alerts import alerts_router
from relevo.server.draining import Drain
from relevo.server.fastlane import FastLane
from relevo.server.feedback import feedback_router
from relevo.server.handlers import install_error_handlers
from relevo.server.monitoring import monitoring_router
from relevo.server.predict import handle_predict
from relevo.server.probes import ProbeThreads, ReadinessProbe, probes_router
from relevo.server.rollouts import rollouts_router
from relevo.server.v2_routes import v2_router
from relevo.serving.log import open_prediction_log
from relevo.serving.metrics import get_metrics
from relevo.serving.runtime import Runtime
from relevo.settings import Settings, get_settings

log = logging.getLogger("relevo.server")


def create_app(
    settings: Settings | None = None, relevo: Relevo | None = None, own_process: bool = True
) -> FastLane:
    """The relevo server as an ASGI app: the predict fast lane in front of the FastAPI app.

    `relevo serve` runs it in processes of its own (`own_process`): then the interpreter is
    tuned for serving. A server inside someone else's process (a notebook, the demo, tests)
    leaves the interpreter's settings alone.
    """
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
    drain = Drain(settings.shutdown_drain_s)
    probe_threads = ProbeThreads()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rv: Relevo = (
            relevo if relevo is not None else await asyncio.to_thread(Relevo, settings=settings)
        )
        metrics = get_metrics()
        # stores what a crashed process left in the spool before serving
        plog = await asyncio.to_thread(
            open_prediction_log,
            rv,
            on_written=metrics.log_written.inc,
            on_error=metrics.log_errors.inc,
        )
        runtime = Runtime(rv, prediction_log=plog, metrics=metrics, freeze_heap=freeze_heap)
        try:
            await asyncio.to_thread(runtime.refresh)
        except RelevoError as exc:
            log.error("loading deployments failed: %s", exc)
        holder["runtime"] = runtime
        probe_threads.start()
        drain.install(asyncio.get_running_loop())  # /readyz fails from the first SIGTERM
        tasks = [asyncio.create_task(runtime.watch()), asyncio.create_task(runtime.shadow.run())]
        if rv.settings.rollout_eval_interval_s > 0:  # issue 14: the gates, one replica at a time
            tasks.append(
                asyncio.create_task(
                    evaluator.run(rv, rv.settings.rollout_eval_interval_s, runtime.refresh)
                )
            )
        alerts = holder["alerts"] = AlertService(rv)
        if rv.settings.monitor_interval_s > 0:  # issue 15: alert rules, one replica at a time
            tasks.append(asyncio.create_task(monitor.run(alerts, rv.settings.monitor_interval_s)))
        try:
            yield
        finally:
            drain.uninstall()
            await asyncio.to_thread(probe_threads.stop)
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            # webhooks still queued get a moment to go out
            await asyncio.to_thread(alerts.dispatcher.close, 2.0)
            if plog is not None:
                # everything answered is stored before the process goes
                await asyncio.to_thread(plog.close)
                if plog.rows_left:  # the store did not take them in time: on disk, not lost
                    log.warning(
                        "prediction log closed: %d rows written, %d kept in the spool for the "
                        "next start to store",
                        plog.rows_written,
                        plog.rows_left,
                    )
                else:
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
    install_error_handlers(app)

    def runtime() -> Runtime:
        return holder["runtime"]

    @app.post(
        "/v1/deployments/{name}/predict",
        tags=["predict"],
        summary="Score rows with the deployment's live model.",
        openapi_extra=openapi.request_body(openapi.PREDICT_BODY, openapi.PREDICT_EXAMPLE),
        responses={
            **openapi.ok(openapi.PREDICTIONS),
            **openapi.errors(400, 401, 403, 404, 413, 422, 503),
        },
    )
    async def predict(name: str, request: Request) -> Response:
        # normally answered by the fast lane (relevo.server.fastlane) before FastAPI sees it;
        # this route documents the endpoint and serves apps mounted without the lane
        status, body, headers = await handle_predict(
            runtime(), name, request.scope, request.receive, time.perf_counter()
        )
        return Response(body, status_code=status, headers=_plain(headers))

    # one readiness check for /readyz and /v2/health/ready (draining, the probes' thread)
    readiness = ReadinessProbe(runtime, lambda: drain.draining, probe_threads)
    app.include_router(probes_router(runtime, probe=readiness, threads=probe_threads))
    app.include_router(admin_router(runtime))
    app.include_router(rollouts_router(runtime))
    app.include_router(monitoring_router(runtime))
    app.include_router(alerts_router(runtime, lambda: holder["alerts"]))
    app.include_router(feedback_router(runtime))
    app.include_router(v2_router(runtime, readiness))
    return app, runtime


def _plain(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}
