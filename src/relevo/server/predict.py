"""The JSON predict endpoint, `POST /v1/deployments/{name}/predict`, transport aside.

Both the fast lane (plain ASGI) and the FastAPI route call `handle_predict` with the request's
ASGI scope and receive channel. The order is what keeps a server safe under abuse: the token
from the headers first, then the deployment, and only then the body, read through the one
bounded reader; the row count is checked right after parsing, before any validation work.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.types import Receive, Scope

from relevo.errors import InvalidInputError, PayloadTooLargeError, Problem
from relevo.server.auth import Access, check
from relevo.server.http import (
    JSON_HEADERS,
    asgi_headers,
    authorization,
    decompress,
    error_body,
    error_headers,
    header,
    parse_json,
    read_body,
)
from relevo.serving.health import observe_failure
from relevo.serving.runtime import Runtime

PROTOCOL = "v1"


def instances_of(body: bytes, max_rows: int) -> list[Any]:
    """The `instances` list of a predict body: 400 for a body that is not JSON, 422 for one
    without a list of instances, 413 for more than `max_rows` of them."""
    payload = parse_json(body)
    if type(payload) is not dict or "instances" not in payload:
        raise InvalidInputError(
            "the body must be a JSON object with an 'instances' list",
            [Problem("field required", column="instances")],
        )
    instances = payload["instances"]
    if type(instances) is list and len(instances) > max_rows:
        raise PayloadTooLargeError(
            f"too many rows: {len(instances):,} instances in one request, at most {max_rows:,} "
            "(RELEVO_MAX_ROWS)",
            [
                Problem(
                    f"{len(instances):,} rows; send at most {max_rows:,} per request",
                    column="instances",
                )
            ],
        )
    return instances  # validation names what else is wrong with it


#: issue 14: a caller holding the admin token may name the model that answers (for testing)
MODEL_HEADER = b"x-relevo-model"
_FORCED = {"champion": 0, "challenger": 1}


def forced_model(rt: Runtime, scope: Scope) -> int | None:
    """The model an `X-Relevo-Model: champion|challenger` header asks for (admin token only),
    or None to let the deployment's routing choose."""
    value = header(scope, MODEL_HEADER)
    if value is None:
        return None
    check(authorization(scope), Access.ADMIN, rt.settings)
    forced = _FORCED.get(value.strip().lower())
    if forced is None:
        raise InvalidInputError(
            "invalid X-Relevo-Model header",
            [Problem("use champion or challenger", column="X-Relevo-Model")],
        )
    return forced


async def handle_predict(
    rt: Runtime, name: str, scope: Scope, receive: Receive, started: float
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Answer one JSON predict request: (status, JSON body, ASGI headers)."""
    body_read = False
    try:
        check(authorization(scope), Access.PREDICT, rt.settings)
        force = forced_model(rt, scope)
        rt.endpoint(name)  # an unknown deployment is a 404 before its body is read
        limit = rt.settings.max_body_bytes
        body = await read_body(scope, receive, limit)
        body_read = True
        body = decompress(body, header(scope, b"content-encoding"), limit)
        instances = instances_of(body, rt.settings.max_rows)
        answer = await rt.predict(name, instances, started, force=force)
    except Exception as exc:  # every failure answers JSON; a 5xx shows no internals
        status, error = error_body(exc, f"POST {scope['path']}")
        observe_failure(rt, name, PROTOCOL, status, started)
        headers = error_headers(status, body_unread=not body_read)
        return status, orjson.dumps(error), [*JSON_HEADERS, *asgi_headers(headers)]
    return 200, orjson.dumps({"predictions": answer.predictions}), JSON_HEADERS


async def predict_asgi(rt: Runtime, name: str, scope: Scope, receive: Receive, send: Any) -> None:
    """Answer `POST /v1/deployments/{name}/predict` straight on ASGI."""
    started = time.perf_counter()
    status, payload, headers = await handle_predict(rt, name, scope, receive, started)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})
