"""Ground truth and performance over HTTP: `POST /v1/deployments/{name}/feedback` and
`GET /v1/deployments/{name}/performance`, behind the API token like predictions (the token is
checked from the headers before any body is read)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from relevo.errors import InvalidInputError, PayloadTooLargeError, Problem, RelevoError
from relevo.feedback.labels import MAX_PROBLEMS, ingest
from relevo.feedback.service import PerformanceService
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

FEEDBACK_BODY = openapi.obj(
    "labels",
    labels={
        "type": "array",
        "minItems": 1,
        "items": openapi.obj("id", "label", id={"type": "string"}, label={}),
        "description": "Labels by prediction id, at most RELEVO_MAX_ROWS per request.",
    },
)
FEEDBACK_ANSWER = openapi.obj(
    "accepted",
    "replaced",
    "unknown_ids",
    accepted={"type": "integer"},
    replaced={"type": "integer"},
    unknown_ids={"type": "array", "items": {"type": "string"}},
)


def labels_of(body: bytes, max_rows: int) -> tuple[list[int], list[Any], list[Any]]:
    """(row numbers, ids, labels) of a feedback body; 422 naming every malformed entry."""
    payload = parse_json(body)
    if type(payload) is not dict or type(payload.get("labels")) is not list:
        raise InvalidInputError(
            'the body must be a JSON object {"labels": [{"id": ..., "label": ...}, ...]}',
            [Problem("a list is required", column="labels")],
        )
    items = payload["labels"]
    if len(items) > max_rows:
        raise PayloadTooLargeError(
            f"too many labels: {len(items):,} in one request, at most {max_rows:,} "
            "(RELEVO_MAX_ROWS)"
        )
    problems: list[Problem] = []
    bad = 0
    for row, item in enumerate(items):
        if type(item) is not dict or "id" not in item or "label" not in item:
            bad += 1
            if len(problems) < MAX_PROBLEMS:
                problems.append(Problem('expected {"id": ..., "label": ...}', row, "labels"))
    if problems:
        raise InvalidInputError(f"{bad:,} malformed labels, nothing stored", problems, bad)
    return list(range(len(items))), [i["id"] for i in items], [i["label"] for i in items]


def feedback_router(runtime: Callable[[], Runtime]) -> APIRouter:
    router = APIRouter(prefix="/v1/deployments")

    @router.post(
        "/{name}/feedback",
        tags=["feedback"],
        summary="Store ground truth for logged predictions, by prediction id.",
        openapi_extra=openapi.request_body(
            FEEDBACK_BODY, {"labels": [{"id": "0193a4f0c2d1a3b4c5d6e7f800000000", "label": 1}]}
        ),
        responses={**openapi.ok(FEEDBACK_ANSWER), **openapi.errors(400, 401, 403, 404, 413, 422)},
    )
    async def feedback(name: str, request: Request) -> Response:
        rt = runtime()
        check(authorization(request.scope), Access.PREDICT, rt.settings)
        body_read = False
        try:
            check_name(name)
            rt.relevo.deployments.get(name)  # 404 before the body is read
            limit = rt.settings.max_body_bytes
            raw = await read_body(request.scope, request.receive, limit)
            body_read = True
            raw = decompress(raw, header(request.scope, b"content-encoding"), limit)
            rows, ids, values = labels_of(raw, rt.settings.max_rows)
        except RelevoError as exc:
            status, error = error_body(exc, f"POST {request.url.path}")
            return json_response(error, status, error_headers(status, not body_read))
        result = await asyncio.to_thread(ingest, rt.relevo, name, [(rows, ids, values)])
        return json_response(result.to_dict())

    @router.get(
        "/{name}/performance",
        tags=["feedback"],
        summary="Realised performance per model and window of prediction time.",
        responses={**openapi.ok(openapi.obj("models")), **openapi.errors(401, 403, 404, 422)},
    )
    async def performance(
        name: str,
        request: Request,
        window: str = "1d",
        since: str | None = None,
        segments: bool = False,
        format: Literal["json", "html"] = "json",
    ) -> Response:
        rt = runtime()
        check(authorization(request.scope), Access.PREDICT, rt.settings)
        check_name(name)
        service = PerformanceService(rt.relevo)
        report = await asyncio.to_thread(service.performance, name, window, since, segments)
        if format == "html":
            return HTMLResponse(report.to_html())
        return json_response(report.to_dict())

    return router
