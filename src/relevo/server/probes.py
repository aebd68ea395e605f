"""Liveness, readiness and metrics: what load balancers and Prometheus ask.

All three stay open (no token needed) so that probes work; readiness shows its details (what is
served, what fails and why) only to a caller with a token once tokens are set, a failing
model's own error text (its artifact's path) only to the token that changes state, and never
the database's user, host or password.

Readiness and metrics run on threads of their own, not on asyncio's default pool: admin reads
waiting on a hung database must not hold the probes, nor the probes them. Probes that arrive
while a readiness check is out share its answer, so a hung database holds one thread however
often it is probed; the check itself gives up on the database after `PING_WAIT_S` (503).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, Request
from fastapi.responses import Response

from relevo.server import openapi
from relevo.server.auth import may_see_details, may_see_internals
from relevo.server.http import authorization, json_response
from relevo.serving.health import Readiness, check_readiness
from relevo.serving.metrics import get_metrics, render_metrics
from relevo.serving.runtime import Runtime


class ProbeThreads:
    """The probes' own threads (one for readiness, one for /metrics), off asyncio's default
    pool, which probes waiting on a hung database once filled; started with the app's
    lifespan (`start`) and ended with it (`stop`)."""

    def __init__(self) -> None:
        self.readiness: ThreadPoolExecutor | None = None
        self.metrics: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self.readiness = ThreadPoolExecutor(1, thread_name_prefix="relevo-readiness")
        self.metrics = ThreadPoolExecutor(1, thread_name_prefix="relevo-metrics")

    def stop(self) -> None:
        """End the threads (a readiness check still out ends within its 2 s bound)."""
        for pool in (self.readiness, self.metrics):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self.readiness = self.metrics = None


class ReadinessProbe:
    """The one readiness check of `/readyz` and `/v2/health/ready`: not ready from the first
    SIGTERM (`draining`), else `check_readiness` on the probes' readiness thread, one check out
    at a time that every probe arriving meanwhile shares."""

    def __init__(
        self,
        runtime: Callable[[], Runtime],
        draining: Callable[[], bool] = lambda: False,
        threads: ProbeThreads | None = None,
    ) -> None:
        self.runtime = runtime
        self.draining = draining
        self.threads = threads or ProbeThreads()
        self._checking: asyncio.Future[Readiness] | None = None

    async def __call__(self, rt: Runtime) -> Readiness:
        if self.draining():  # out of the load balancers before the process stops
            return Readiness(False, problems=["shutting down"])
        checking = self._checking
        if checking is None or checking.done():
            loop = asyncio.get_running_loop()
            checking = loop.run_in_executor(self.threads.readiness, check_readiness, rt)
            self._checking = checking
        # shielded: a probe that gives up does not cancel the check the others wait on
        return await asyncio.shield(checking)


def probes_router(
    runtime: Callable[[], Runtime],
    draining: Callable[[], bool] = lambda: False,
    threads: ProbeThreads | None = None,
    probe: ReadinessProbe | None = None,
) -> APIRouter:
    """The probes; `draining` tells when the process got SIGTERM (see `server.draining`);
    `threads`: where readiness and /metrics run (asyncio's default pool before they start);
    `probe`: the readiness check (shared with the V2 route; made here when not given)."""
    router = APIRouter(tags=["health"])
    threads = threads or ProbeThreads()
    check = probe or ReadinessProbe(runtime, draining, threads)

    @router.get(
        "/healthz",
        summary="Liveness: the process answers.",
        responses=openapi.ok(openapi.obj("live", live={"type": "boolean"})),
    )
    async def healthz() -> Response:
        return json_response({"status": "ok", "live": True})

    @router.get(
        "/readyz",
        summary="Readiness: store reachable, models loaded (details with a token).",
        responses={
            **openapi.ok(openapi.READINESS, "Ready."),
            503: {
                "description": "Not ready.",
                "content": {openapi.JSON: {"schema": openapi.READINESS}},
            },
        },
    )
    async def readyz(request: Request) -> Response:
        rt = runtime()
        readiness = await check(rt)
        token = authorization(request.scope)
        details = may_see_details(token, rt.settings)
        internals = details and may_see_internals(token, rt.settings)
        return json_response(readiness.to_dict(details, internals), readiness.status)

    @router.get(
        "/metrics",
        summary="Prometheus metrics (text format).",
        responses={200: {"description": "Metrics.", "content": {"text/plain": {}}}},
    )
    async def metrics() -> Response:
        rt = runtime()
        m = get_metrics()
        m.sample_process()
        if rt.log is not None:
            m.log_depth.set(rt.log.depth)
            m.log_dead_letter.set(rt.log.dead_lettered)
        # ~2 ms with a few deployments, more with many labels or workers (it reads their
        # files): off the event loop
        loop = asyncio.get_running_loop()
        data, content_type = await loop.run_in_executor(threads.metrics, render_metrics)
        return Response(data, media_type=content_type)

    return router
