"""Rollout control over HTTP, behind the admin token: `POST /v1/deployments/{name}/promote`,
`POST .../rollback`, `GET .../history` and `GET .../status` (rows, errors and latency per model).

As everywhere in the admin door, the token is checked from the headers before any body is read;
promote and rollback take an optional JSON body `{"reason": "...", "revision": N}`: the reason
for the audit trail, and the revision the caller saw (refused with 409 if the deployment moved).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from relevo.errors import InvalidInputError, Problem, RelevoError
from relevo.routing.deployment import Deployment
from relevo.routing.evaluator import current_decision
from relevo.routing.stats import arms, shadow_comparison
from relevo.server import openapi
from relevo.server.auth import Access, check
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
from relevo.settings import Settings

#: the optional body of promote and rollback (what `reason_of` reads)
_CHANGE_BODY = {
    **openapi.obj(
        reason={
            "type": ["string", "null"],
            "maxLength": 2000,
            "description": "why, for the audit trail",
        },
        revision={
            "type": ["integer", "null"],
            "minimum": 1,
            "description": "the revision you saw: refused with 409 if the deployment moved",
        },
    ),
    "additionalProperties": False,
}


def http_actor(settings: Settings, header: str | None) -> str:
    """Who acts over HTTP, for the audit trail: the kind of token that authorised the change
    (never the token itself)."""
    if settings.admin_token is None and settings.api_token is None:
        return "http:open"
    token = (header or "").partition(" ")[2].strip()
    return "token:admin" if token == settings.admin_token else "token:api"


def reason_of(raw: bytes) -> tuple[str | None, int | None]:
    """The optional `reason` and `revision` of a promote or rollback body (empty body: none)."""
    if not raw.strip():
        return None, None
    payload = parse_json(raw)
    if type(payload) is not dict or set(payload) - {"reason", "revision"}:
        raise InvalidInputError(
            'the body must be empty or {"reason": "...", "revision": N}',
            [Problem("only 'reason' and 'revision' are accepted", column="body")],
        )
    reason = payload.get("reason")
    if reason is not None and (type(reason) is not str or len(reason) > 2000):
        raise InvalidInputError(
            "invalid reason", [Problem("a text of up to 2,000 characters", column="reason")]
        )
    revision = payload.get("revision")
    if revision is not None and (type(revision) is not int or revision < 1):
        raise InvalidInputError(
            "invalid revision",
            [Problem("the deployment's revision you saw: a whole number >= 1", column="revision")],
        )
    return reason, revision


def status_body(rt: Runtime, dep: Deployment) -> dict[str, Any]:
    """A deployment's state, what this replica serves, and rows/errors/latency per model."""
    live = rt.endpoints.get(dep.name)
    return {
        **dep.to_dict(),
        "serving": [r.ref for r in live.runners] if live is not None else [],
        # the revision this replica routes by (it applies a change within seconds)
        "serving_revision": live.deployment.revision if live is not None else None,
        "models": [arm.to_dict() for arm in arms(rt.relevo.store, dep)],
        "shadow": shadow_comparison(rt.relevo.store, dep),
        # what the gates say now (a move the evaluator makes at its next look, or why it holds)
        "decision": _decided(rt, dep),
    }


def _decided(rt: Runtime, dep: Deployment) -> dict[str, Any] | None:
    decision = current_decision(rt.relevo, dep)
    return decision.to_dict() if decision is not None else None


def rollouts_router(runtime: Callable[[], Runtime]) -> APIRouter:
    router = APIRouter(prefix="/v1/deployments")

    async def change(request: Request, name: str, action: str) -> Response:
        rt = runtime()
        check(authorization(request.scope), Access.ADMIN, rt.settings)
        body_read = False
        try:
            check_name(name)
            limit = rt.settings.max_body_bytes
            raw = await read_body(request.scope, request.receive, limit)
            body_read = True
            raw = decompress(raw, header(request.scope, b"content-encoding"), limit)
            reason, revision = reason_of(raw)
        except RelevoError as exc:
            status, error = error_body(exc, f"POST {request.url.path}")
            return json_response(error, status, error_headers(status, not body_read))
        service = rt.relevo.deployments
        act = service.promote if action == "promote" else service.rollback
        who = http_actor(rt.settings, authorization(request.scope))
        dep = await asyncio.to_thread(act, name, actor=who, reason=reason, revision=revision)
        await asyncio.to_thread(rt.refresh)
        return json_response(dep.to_dict())

    changes = {
        **openapi.ok(openapi.DEPLOYMENT),
        **openapi.errors(400, 401, 403, 404, 409, 413, 422),
    }

    @router.post(
        "/{name}/promote",
        tags=["deployments"],
        summary="Next rollout step, or the challenger becomes the champion.",
        openapi_extra=openapi.request_body(
            _CHANGE_BODY, {"reason": "gates pass", "revision": 7}, required=False
        ),
        responses=changes,
    )
    async def promote(name: str, request: Request) -> Response:
        return await change(request, name, "promote")

    @router.post(
        "/{name}/rollback",
        tags=["deployments"],
        summary="Drop the challenger, or bring back the previous champion.",
        openapi_extra=openapi.request_body(_CHANGE_BODY, {"reason": "AUC lower"}, required=False),
        responses=changes,
    )
    async def rollback(name: str, request: Request) -> Response:
        return await change(request, name, "rollback")

    @router.get(
        "/{name}/history",
        tags=["deployments"],
        summary="The audit trail: every change, when, what, why and by whom.",
        responses={
            **openapi.ok(openapi.obj("events", events={"type": "array"})),
            **openapi.errors(401, 403, 404),
        },
    )
    async def history(name: str, request: Request) -> Response:
        rt = runtime()
        check(authorization(request.scope), Access.ADMIN, rt.settings)
        check_name(name)
        events = await asyncio.to_thread(rt.relevo.deployments.history, name)
        return json_response({"events": [e.to_dict() for e in events]})

    @router.get(
        "/{name}/status",
        tags=["deployments"],
        summary="State, what this replica serves, and rows, errors and latency per model.",
        responses={**openapi.ok(openapi.DEPLOYMENT), **openapi.errors(401, 403, 404)},
    )
    async def status(name: str, request: Request) -> Response:
        rt = runtime()
        check(authorization(request.scope), Access.ADMIN, rt.settings)
        check_name(name)

        def read() -> dict[str, Any]:
            return status_body(rt, rt.relevo.deployments.get(name))

        return json_response(await asyncio.to_thread(read))

    return router
