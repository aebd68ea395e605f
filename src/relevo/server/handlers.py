"""How FastAPI's routes answer errors: every one in relevo's shape (V2's under /v2), mapped once.

FastAPI's own answers are mapped too, so that users never see its `{"detail": [...]}` shape: a
request it cannot validate becomes a 422 listing the problems by field, and its 404/405 for
unknown paths keep their status with relevo's body.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from relevo.errors import InvalidInputError, Problem, RelevoError
from relevo.server.http import BadRequest, error_body, error_headers, json_response


def _is_v2(request: Request) -> bool:
    path = request.url.path
    return path == "/v2" or path.startswith("/v2/")


def _answer(request: Request, exc: BaseException) -> Response:
    v2 = _is_v2(request)
    if v2 and isinstance(exc, InvalidInputError) and exc.http_status == 422:
        exc = BadRequest(exc.message, exc.problems, exc.total)  # the V2 spec's status
    status, body = error_body(exc, f"{request.method} {request.url.path}", v2=v2)
    # a refusal from the headers alone (token, size) may leave a body unread: close then
    return json_response(body, status, error_headers(status, status in (401, 403, 413)))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RelevoError)
    async def _relevo_error(request: Request, exc: RelevoError) -> Response:
        return _answer(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            Problem(
                str(err.get("msg", "invalid")),
                column=".".join(str(p) for p in err.get("loc", ())) or None,
            )
            for err in exc.errors()
        ]
        return _answer(request, InvalidInputError("invalid request", problems))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers) if exc.headers else None
        return json_response({"error": str(exc.detail)}, exc.status_code, headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # a model that raises, or a bug: a generic body with a request id; the log gets the rest
        return _answer(request, exc)
