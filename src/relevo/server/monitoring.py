"""Drift over HTTP: `GET /v1/deployments/{name}/drift?since=24h&until=&model=&baseline=`
(a read: the API or the admin token, like the other reads), JSON by default, the offline HTML
report with `format=html`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from relevo.errors import InvalidInputError, Problem
from relevo.monitoring.service import BASELINES, MonitoringService
from relevo.monitoring.timespan import parse_time
from relevo.server import openapi
from relevo.server.auth import Access, check
from relevo.server.http import authorization, check_name, json_response
from relevo.serving.runtime import Runtime

DRIFT_REPORT = openapi.obj(
    "features",
    "dataset_drift",
    "drifted_features",
    deployment={"type": "string"},
    model={"type": "string"},
    baseline={"type": "string", "enum": list(BASELINES)},
    since={"type": "string", "format": "date-time"},
    until={"type": "string", "format": "date-time"},
    dataset_drift={"type": "boolean"},
    drifted_share={"type": ["number", "null"]},
    drifted_features={"type": "array", "items": {"type": "string"}},
    features={"type": "array", "items": {"type": "object"}},
    prediction={"type": ["object", "null"]},
    multivariate={"type": ["object", "null"]},
)


def monitoring_router(runtime: Callable[[], Runtime]) -> APIRouter:
    router = APIRouter(prefix="/v1/deployments")

    @router.get(
        "/{name}/drift",
        tags=["monitoring"],
        summary="Data and prediction drift of a deployment over a window, against a baseline.",
        responses={
            **openapi.ok(DRIFT_REPORT),
            **openapi.errors(401, 403, 404, 422),
        },
    )
    async def drift(
        name: str,
        request: Request,
        since: str = Query("24h", description="Window start: 30m, 24h, 7d or an ISO time."),
        until: str | None = Query(None, description="Window end (default: now)."),
        model: str | None = Query(None, description="NAME:VERSION (default: the busiest)."),
        baseline: str = Query("reference", description="reference, previous or seasonal."),
        format: str = Query("json", description="json, or html for the offline report."),
    ) -> Response:
        rt = runtime()
        check(authorization(request.scope), Access.PREDICT, rt.settings)
        check_name(name)
        if format not in ("json", "html"):
            raise InvalidInputError(
                f"invalid format {format!r}", [Problem("json or html", option="format")]
            )
        now = datetime.now(UTC)
        start = parse_time(since, now, "since")
        end = parse_time(until, now, "until") if until else now
        service = MonitoringService(rt.relevo)
        report = await asyncio.to_thread(service.drift, name, start, end, model, baseline)
        if format == "html":
            return HTMLResponse(report.to_html())
        return json_response(report.to_dict())

    return router
