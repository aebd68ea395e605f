"""Admin and read resources under /v1/: models and deployments.

Every route checks its token from the headers first; the one route with a body (PUT) reads it
afterwards through the shared bounded reader, whatever its Content-Type, and validates it here,
so that every error is in relevo's shape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from relevo.errors import InvalidInputError, Problem, RelevoError
from relevo.registry.registry import NAME_RE
from relevo.routing.service import KEEP
from relevo.server import openapi
from relevo.server.auth import Access, check
from relevo.server.http import (
    authorization,
    check_name,
    check_version,
    decompress,
    error_body,
    error_headers,
    header,
    json_response,
    parse_json,
    read_body,
)
from relevo.server.rollouts import http_actor
from relevo.serving.runtime import Runtime

#: a version number in a path: documented as the integer it is, read as text so that the route
#: answers 422 (not a number) or 404 (out of any store's range) in relevo's shape
VersionPath = Annotated[str, Path(json_schema_extra={"type": "integer", "minimum": 1})]


def _whole(value: Any) -> Any:
    """5.0 is the step 5, 50.0 the 50 rows (JSON has one kind of number); 5.5, "5" and true
    stay refused."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


class DeployBody(BaseModel):
    # strict: `true` is not a step of 1 nor "0.1" a weight; relevo's own checks see the types
    # that were sent
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(..., description="NAME:VERSION of a registered model", examples=["churn:1"])
    key: str | None = Field(
        None,
        description="Column of the instances that routes requests; omitted: keep the current "
        "key, null: no key.",
    )
    # issue 14: a challenger beside the champion (docs/deployments.md)
    strategy: Literal["basic", "shadow", "canary"] | None = None
    weight: float | None = Field(None, description="canary: the challenger's share of rows")
    steps: list[Annotated[int, BeforeValidator(_whole)]] | None = Field(
        None, description="canary: rollout steps in percent"
    )
    rollout: bool = Field(False, description="canary: progressive rollout 5, 25, 50, 100")
    manual: bool = Field(False, description="hold at each step until promote")
    mirror: float | None = Field(None, description="shadow: the share of rows scored")
    min_step_rows: Annotated[int, BeforeValidator(_whole)] | None = Field(
        None, description="rollout: challenger rows a step needs (default: the server's setting)"
    )
    min_step_seconds: float | None = Field(
        None, description="rollout: seconds a step lasts at least (default: the server's setting)"
    )
    bake_seconds: float | None = Field(
        None,
        description="after a promotion, how long a firing alert rolls back on its own "
        "(default: the server's setting)",
    )
    reason: str | None = Field(None, max_length=2000, description="why, for the audit trail")


def deploy_body(payload: Any) -> DeployBody:
    """The PUT body as a DeployBody, or a 422 listing every problem by field."""
    if type(payload) is not dict:
        raise InvalidInputError(
            'the body must be a JSON object: {"model": "NAME:VERSION", "key": "COLUMN"}',
            [Problem(f"expected an object, got {type(payload).__name__}", column="body")],
        )
    try:
        return DeployBody.model_validate(payload)
    except ValidationError as exc:
        problems = [
            Problem(err["msg"], column=".".join(str(p) for p in err["loc"])) for err in exc.errors()
        ]
        raise InvalidInputError("invalid deployment request", problems) from None


def admin_router(runtime: Callable[[], Runtime]) -> APIRouter:
    router = APIRouter(prefix="/v1")

    def authorized(request: Request, access: Access) -> Runtime:
        rt = runtime()
        check(authorization(request.scope), access, rt.settings)
        return rt

    @router.get(
        "/models",
        tags=["models"],
        summary="List registered model versions.",
        responses={
            **openapi.ok(openapi.obj("models", models={"type": "array"})),
            **openapi.errors(401, 403),
        },
    )
    async def list_models(request: Request) -> Response:
        rt = authorized(request, Access.PREDICT)
        versions = await asyncio.to_thread(rt.relevo.registry.list)
        return json_response({"models": [v.to_dict() for v in versions]})

    @router.get(
        "/models/{name}/versions/{version}",
        tags=["models"],
        summary="A model version with its signature and reference profile summary.",
        responses={**openapi.ok(openapi.MODEL_VERSION), **openapi.errors(401, 403, 404, 422)},
    )
    async def show_model(name: str, version: VersionPath, request: Request) -> Response:
        rt = authorized(request, Access.PREDICT)
        check_name(name, "model")
        number = check_version(version, name)
        registry = rt.relevo.registry
        found = await asyncio.to_thread(registry.get, f"{name}:{number}")
        profile = await asyncio.to_thread(registry.reference_profile, found)
        return json_response({**found.to_dict(), "reference_profile": profile.summary()})

    @router.get(
        "/deployments",
        tags=["deployments"],
        summary="List deployments.",
        responses={
            **openapi.ok(openapi.obj("deployments", deployments={"type": "array"})),
            **openapi.errors(401, 403),
        },
    )
    async def list_deployments(request: Request) -> Response:
        rt = authorized(request, Access.PREDICT)
        deps = await asyncio.to_thread(rt.relevo.deployments.list)
        return json_response({"deployments": [d.to_dict() for d in deps]})

    @router.get(
        "/deployments/{name}",
        tags=["deployments"],
        summary="A deployment's state.",
        responses={**openapi.ok(openapi.DEPLOYMENT), **openapi.errors(401, 403, 404)},
    )
    async def get_deployment(name: str, request: Request) -> Response:
        rt = authorized(request, Access.PREDICT)
        check_name(name)
        dep = await asyncio.to_thread(rt.relevo.deployments.get, name)
        body = dep.to_dict()
        live = rt.endpoints.get(name)
        body["serving"] = live.primary.ref if live is not None else None
        return json_response(body)

    @router.put(
        "/deployments/{name}",
        tags=["deployments"],
        summary="Deploy a model version: swap it (basic) or add it as a shadow or canary "
        "challenger.",
        # the schema of the body this route reads (DeployBody), so the document and the
        # route never disagree on a field
        openapi_extra=openapi.request_body(
            DeployBody.model_json_schema(), {"model": "churn:1", "key": "customer_id"}
        ),
        responses={
            **openapi.ok(openapi.DEPLOYMENT),
            **openapi.errors(400, 401, 403, 404, 409, 413, 422, 503),
        },
    )
    async def deploy(name: str, request: Request) -> Response:
        rt = authorized(request, Access.ADMIN)
        body_read = False
        try:
            if not NAME_RE.fullmatch(name):
                raise InvalidInputError(
                    "invalid deployment name",
                    [
                        Problem(
                            "use letters, digits, '.', '_' or '-' (up to 200 characters, "
                            "starting with a letter or digit)",
                            column="name",
                        )
                    ],
                )
            limit = rt.settings.max_body_bytes
            raw = await read_body(request.scope, request.receive, limit)
            body_read = True
            raw = decompress(raw, header(request.scope, b"content-encoding"), limit)
            body = deploy_body(parse_json(raw))
        except RelevoError as exc:
            status, error = error_body(exc, f"PUT {request.url.path}")
            return json_response(error, status, error_headers(status, not body_read))
        key = body.key if "key" in body.model_fields_set else KEEP
        dep = await asyncio.to_thread(
            partial(
                rt.relevo.deployments.deploy,
                name,
                body.model,
                key=key,
                strategy=body.strategy,
                weight=body.weight,
                steps=body.steps,
                rollout=body.rollout,
                manual=body.manual,
                mirror=body.mirror,
                min_step_rows=body.min_step_rows,
                min_step_seconds=body.min_step_seconds,
                bake_seconds=body.bake_seconds,
                actor=http_actor(rt.settings, authorization(request.scope)),
                reason=body.reason,
            )
        )
        await asyncio.to_thread(rt.refresh)
        return json_response(dep.to_dict())

    return router
