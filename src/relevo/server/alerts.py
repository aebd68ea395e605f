"""Alerts over HTTP: `GET /v1/alerts`, `POST /v1/alerts/evaluate`, `GET|POST
/v1/alerts/silences`, `GET /v1/alerts/rules`, and a deployment's monitoring settings under
`GET|PUT /v1/deployments/{name}/monitoring`. Reads take the API token (when set), changes the
admin token; every route checks it from the headers before reading a body."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from relevo.errors import InvalidInputError, Problem, RelevoError
from relevo.monitoring.alerts import config
from relevo.monitoring.alerts.evaluator import refresh_gauges
from relevo.monitoring.alerts.service import AlertService
from relevo.server import openapi
from relevo.server.auth import Access, check, may_change
from relevo.server.http import (
    authorization,
    check_name,
    decompress,
    error_body,
    error_headers,
    header,
    json_response,
    parse_json,
    read_body,
)
from relevo.serving.runtime import Runtime

_SILENCE = openapi.obj(
    deployment={"type": "string"},
    rule={"type": "string"},
    subject={"type": "string"},
    until={"type": "string", "format": "date-time"},
    duration_s={"type": "number", "exclusiveMinimum": 0},
    reason={"type": "string"},
)
_TEXT_OR_NULL = {"type": ["string", "null"]}
_SILENCE_MADE = openapi.obj(
    "id",
    "until",
    id={"type": "integer"},
    deployment=_TEXT_OR_NULL,
    rule=_TEXT_OR_NULL,
    subject=_TEXT_OR_NULL,
    until={"type": "string", "format": "date-time"},
    reason=_TEXT_OR_NULL,
    created_at=_TEXT_OR_NULL,
)
_MONITORING = openapi.obj(
    alerts={"type": "object"}, drift={"type": "object"}, feedback={"type": "object"}
)
_SILENCE_KEYS = {"deployment", "rule", "subject", "until", "duration_s", "reason"}


def _flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return False
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise InvalidInputError("invalid query", [Problem("true or false", column=name)])


def silence_args(payload: Any) -> dict[str, Any]:
    """The silence body as keyword arguments of `AlertService.silence`, or a 422."""
    if type(payload) is not dict:
        raise InvalidInputError(
            "the body must be a JSON object", [Problem("expected an object", column="body")]
        )
    problems = [
        Problem(f"unknown field {k!r}", option=k) for k in payload if k not in _SILENCE_KEYS
    ]
    out: dict[str, Any] = {}
    for key in ("deployment", "rule", "subject", "reason"):
        value = payload.get(key)
        if value is not None and (type(value) is not str or len(value) > 2000):
            problems.append(Problem("a text of up to 2,000 characters", column=key))
        out[key] = value
    until = payload.get("until")
    if until is not None:
        try:
            out["until"] = datetime.fromisoformat(str(until).replace("Z", "+00:00"))
        except ValueError:
            problems.append(
                Problem("until must be an ISO 8601 time, e.g. 2026-12-01T08:00:00Z", option="until")
            )
    duration = payload.get("duration_s")
    if duration is not None:
        if type(duration) not in (int, float):
            problems.append(Problem("duration_s must be a number of seconds", option="duration_s"))
        else:
            out["duration_s"] = float(duration)
    if problems:
        raise InvalidInputError("invalid silence", problems)
    return out


def alerts_router(runtime: Callable[[], Runtime], alerts: Callable[[], AlertService]) -> APIRouter:
    router = APIRouter(prefix="/v1")

    def authorized(request: Request, access: Access) -> AlertService:
        check(authorization(request.scope), access, runtime().settings)
        return alerts()

    async def body_of(request: Request) -> Any:
        limit = runtime().settings.max_body_bytes
        raw = await read_body(request.scope, request.receive, limit)
        return parse_json(decompress(raw, header(request.scope, b"content-encoding"), limit))

    def refused(exc: RelevoError, request: Request, body_read: bool) -> Response:
        status, error = error_body(exc, f"{request.method} {request.url.path}")
        return json_response(error, status, error_headers(status, not body_read))

    @router.get(
        "/alerts",
        tags=["alerts"],
        summary="Firing alerts (all=true: every incident kept), newest first.",
        responses={
            **openapi.ok(openapi.obj("alerts", alerts={"type": "array"})),
            **openapi.errors(401, 403, 404, 422),
        },
    )
    async def list_alerts(request: Request) -> Response:
        service = authorized(request, Access.PREDICT)
        deployment = request.query_params.get("deployment")
        if deployment is not None:
            check_name(deployment)
        every = _flag(request, "all")
        found = await asyncio.to_thread(service.list, deployment, all_states=every)
        return json_response({"alerts": [a.to_dict() for a in found]})

    @router.post(
        "/alerts/evaluate",
        tags=["alerts"],
        summary="Evaluate every deployment's alert rules now; the changes and notifications.",
        responses={**openapi.ok(openapi.obj("changed")), **openapi.errors(401, 403)},
    )
    async def evaluate(request: Request) -> Response:
        service = authorized(request, Access.ADMIN)
        report = await asyncio.to_thread(service.evaluate)
        await asyncio.to_thread(refresh_gauges, service)
        return json_response(report.to_dict())

    @router.get(
        "/alerts/rules",
        tags=["alerts"],
        summary="The alert rules with their settings (a deployment's, or the defaults).",
        responses={
            **openapi.ok(openapi.obj("rules", rules={"type": "array"})),
            **openapi.errors(401, 403, 404),
        },
    )
    async def rules(request: Request) -> Response:
        service = authorized(request, Access.PREDICT)
        deployment = request.query_params.get("deployment")
        if deployment is not None:
            check_name(deployment)
        found = await asyncio.to_thread(service.rules, deployment)
        return json_response({"rules": [r.to_dict() for r in found]})

    @router.get(
        "/alerts/silences",
        tags=["alerts"],
        summary="The silences in force.",
        responses={
            **openapi.ok(openapi.obj("silences", silences={"type": "array"})),
            **openapi.errors(401, 403),
        },
    )
    async def silences(request: Request) -> Response:
        service = authorized(request, Access.PREDICT)
        found = await asyncio.to_thread(service.silences)
        return json_response({"silences": [s.to_dict() for s in found]})

    @router.post(
        "/alerts/silences",
        tags=["alerts"],
        summary="Silence matching alerts until a time: kept and listed, not notified.",
        openapi_extra=openapi.request_body(
            _SILENCE, {"deployment": "churn", "rule": "no_predictions", "duration_s": 7200}
        ),
        responses={
            **openapi.ok(_SILENCE_MADE),
            **openapi.errors(400, 401, 403, 404, 413, 422),
        },
    )
    async def add_silence(request: Request) -> Response:
        service = authorized(request, Access.ADMIN)
        body_read = False
        try:
            payload = await body_of(request)
            body_read = True
            args = silence_args(payload)
            found = await asyncio.to_thread(lambda: service.silence(**args))
        except RelevoError as exc:
            return refused(exc, request, body_read)
        return json_response(found.to_dict())

    @router.get(
        "/deployments/{name}/monitoring",
        tags=["alerts"],
        summary="A deployment's monitoring settings and its effective alert rules.",
        responses={**openapi.ok(openapi.obj("monitoring")), **openapi.errors(401, 403, 404)},
    )
    async def get_monitoring(name: str, request: Request) -> Response:
        service = authorized(request, Access.PREDICT)
        check_name(name)
        # the webhook addresses are credentials: whole for whoever may change them
        whole = may_change(authorization(request.scope), runtime().settings)

        def read() -> dict[str, Any]:
            stored = config.get(service.rv, name)
            if not whole:
                stored = config.redacted(stored)
            return {
                "deployment": name,
                "monitoring": stored,
                "rules": [r.to_dict() for r in service.rules(name)],
            }

        return json_response(await asyncio.to_thread(read))

    @router.put(
        "/deployments/{name}/monitoring",
        tags=["alerts"],
        summary="Replace a deployment's monitoring settings (sections drift, alerts, feedback).",
        openapi_extra=openapi.request_body(
            openapi.obj(
                alerts={"type": "object"}, drift={"type": "object"}, feedback={"type": "object"}
            ),
            {"alerts": {"latency_p99": {"threshold_ms": 800}}},
        ),
        responses={
            **openapi.ok(openapi.obj("monitoring")),
            **openapi.errors(400, 401, 403, 404, 413, 422),
        },
    )
    async def put_monitoring(name: str, request: Request) -> Response:
        service = authorized(request, Access.ADMIN)
        body_read = False
        try:
            check_name(name)
            payload = await body_of(request)
            body_read = True
            stored = await asyncio.to_thread(config.put, service.rv, name, payload)
        except RelevoError as exc:
            return refused(exc, request, body_read)
        return json_response({"deployment": name, "monitoring": stored})

    return router
