"""Admin and read resources under /v1/: models and deployments."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from relevo.routing.service import KEEP
from relevo.server.auth import Access, check
from relevo.serving.runtime import Runtime


class DeployBody(BaseModel):
    model: str = Field(..., description="NAME:VERSION of a registered model", examples=["churn:1"])
    key: str | None = Field(
        None,
        description="Column of the instances that routes requests; omitted: keep the current "
        "key, null: no key.",
    )


def admin_router(runtime: Callable[[], Runtime]) -> APIRouter:
    from relevo.server.app import json_response

    router = APIRouter(prefix="/v1")

    def rv_for(request: Request, access: Access) -> Runtime:
        rt = runtime()
        check(request.headers.get("authorization"), access, rt.settings)
        return rt

    @router.get("/models", tags=["models"], summary="List registered model versions.")
    async def list_models(request: Request) -> Response:
        rt = rv_for(request, Access.PREDICT)
        versions = await asyncio.to_thread(rt.relevo.registry.list)
        return json_response({"models": [v.to_dict() for v in versions]})

    @router.get(
        "/models/{name}/versions/{version}",
        tags=["models"],
        summary="A model version with its signature and reference profile summary.",
    )
    async def show_model(name: str, version: int, request: Request) -> Response:
        rt = rv_for(request, Access.PREDICT)
        registry = rt.relevo.registry
        found = await asyncio.to_thread(registry.get, f"{name}:{version}")
        profile = await asyncio.to_thread(registry.reference_profile, found)
        return json_response({**found.to_dict(), "reference_profile": profile.summary()})

    @router.get("/deployments", tags=["deployments"], summary="List deployments.")
    async def list_deployments(request: Request) -> Response:
        rt = rv_for(request, Access.PREDICT)
        deps = await asyncio.to_thread(rt.relevo.deployments.list)
        return json_response({"deployments": [d.to_dict() for d in deps]})

    @router.get("/deployments/{name}", tags=["deployments"], summary="A deployment's state.")
    async def get_deployment(name: str, request: Request) -> Response:
        rt = rv_for(request, Access.PREDICT)
        dep = await asyncio.to_thread(rt.relevo.deployments.get, name)
        body = dep.to_dict()
        live = rt.endpoints.get(name)
        body["serving"] = live.primary.ref if live is not None else None
        return json_response(body)

    @router.put(
        "/deployments/{name}",
        tags=["deployments"],
        summary="Deploy a model version under a name (basic strategy: swap).",
    )
    async def deploy(name: str, body: DeployBody, request: Request) -> Response:
        rt = rv_for(request, Access.ADMIN)
        key = body.key if "key" in body.model_fields_set else KEEP
        dep = await asyncio.to_thread(rt.relevo.deployments.deploy, name, body.model, key=key)
        await asyncio.to_thread(rt.refresh)
        return json_response(dep.to_dict())

    return router
