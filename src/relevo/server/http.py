"""The HTTP helpers every route shares: headers, the one bounded body reader, JSON in and out,
and the one error body.

Every route reads its body through `read_body` (after checking its token from the headers) and
undoes its Content-Encoding with `decompress`, so one limit (RELEVO_MAX_BODY_MB) holds
everywhere, before and after inflating, and every error leaves the server through
`error_body` (relevo's `{"error", "problems"}`, or V2's `{"error"}` under /v2), so that a
server-side failure never shows more than `relevo.serving.health.failure_body` allows.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import orjson
from fastapi.responses import Response
from starlette.types import Receive, Scope

from relevo.errors import (
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    Problem,
    RelevoError,
)
from relevo.names import check_name as check_name  # the routes' 404 for an impossible name
from relevo.registry.types import MAX_VERSION
from relevo.serving.health import failure_body

JSON = "application/json"
#: ASGI response headers of a JSON answer
JSON_HEADERS = [(b"content-type", b"application/json")]


class BadRequest(InvalidInputError):
    """A request that is not what the endpoint reads (not JSON, an empty body): 400."""

    http_status = 400


def header(scope: Scope, name: bytes) -> str | None:
    """The value of request header `name` (lower case), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


#: the most gzip members one request body may hold (one is what clients send)
GZIP_MEMBERS = 64


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo the request's Content-Encoding (tritonclient can gzip or deflate its requests; every
    route takes the same), refusing (413) a body that inflates past `limit` bytes."""
    if not encoding or encoding.strip().lower() == "identity":
        return body
    coding = encoding.strip().lower()
    if coding not in ("gzip", "deflate"):
        raise BadRequest(f"unsupported Content-Encoding {encoding!r}: use gzip, deflate or none")
    if not body:  # nothing sent: nothing to inflate (as an empty body without the header)
        return body
    # gzip: every member, as `gzip -d` reads them (a file made of several concatenated);
    # deflate: one stream, nothing after it
    parts: list[bytes] = []
    size = 0
    rest = body
    while True:
        inflater = zlib.decompressobj(31 if coding == "gzip" else 15)
        try:
            out = inflater.decompress(rest, limit - size + 1)
        except zlib.error as exc:
            raise BadRequest(f"the request body is not valid {coding} data: {exc}") from None
        size += len(out)
        if size > limit or inflater.unconsumed_tail:
            raise PayloadTooLargeError(
                f"the request body inflates to more than {limit:,} bytes (RELEVO_MAX_BODY_MB)"
            )
        if not inflater.eof:
            raise BadRequest(f"the request body is not valid {coding} data: it is truncated")
        parts.append(out)
        rest = inflater.unused_data
        if not rest:
            return parts[0] if len(parts) == 1 else b"".join(parts)
        if coding != "gzip":
            raise BadRequest(
                f"the request body is not valid {coding} data: {len(rest):,} bytes follow "
                "the end of its compressed stream"
            )
        if len(parts) == GZIP_MEMBERS:  # each costs a new inflater: bounded, like the bytes
            raise BadRequest(
                f"the request body has more than {GZIP_MEMBERS} gzip members; send one"
            )


def authorization(scope: Scope) -> str | None:
    return header(scope, b"authorization")


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing (413) one larger than `limit` bytes: at once when its
    Content-Length says so, else as soon as the bytes received pass the limit."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("the client closed the connection before sending the whole body")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        more = bool(message.get("more_body"))
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"the request body is larger than {limit:,} bytes (RELEVO_MAX_BODY_MB)"
    )


#: the parser's reasons a caller can act on, in their words (the others, "unexpected
#: character" and such, are parser jargon: the place says enough)
_REASONS = (
    ("UTF-8 byte order mark", "it starts with a UTF-8 byte order mark (BOM); send it without one"),
    ("str is not valid UTF-8", "it is not UTF-8 text"),
    ("unexpected content after document", "something follows the JSON document"),
    ("unexpected end of data", "it ends before the JSON document does"),
)


def parse_json(body: bytes) -> Any:
    """The request body as JSON, or a 400 naming what is wrong."""
    if not body:
        raise BadRequest("the request body is empty: send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        text = str(exc)
        reason, _, where = text.rpartition(": line ")
        where = f"line {where}" if reason else text
        if re.search(rb"\b(NaN|-?Infinity)\b", body):
            raise BadRequest(
                f"the request body is not valid JSON ({where}): NaN and Infinity are not JSON "
                "numbers; send null for a missing value"
            ) from None
        if "number is infinity" in text:
            raise BadRequest(
                f"a number in the request body is too large ({where}): beyond a 64-bit float "
                "(about 1.8e308)"
            ) from None
        why = next((words for start, words in _REASONS if reason.startswith(start)), None)
        if why is not None:
            raise BadRequest(f"the request body is not valid JSON: {why} ({where})") from None
        raise BadRequest(f"the request body is not valid JSON ({where})") from None


def check_version(text: str, name: str) -> int:
    """A version number from a URL path: 422 when it is not a whole number, 404 when no store
    can hold it."""
    if not (text.isascii() and text.isdigit()):
        raise InvalidInputError(
            "invalid version in the path",
            [Problem(f"expected a whole number, got {text[:40]!r}", column="version")],
        )
    number = int(text) if len(text) <= 20 else MAX_VERSION + 1
    if not 1 <= number <= MAX_VERSION:
        raise NotFoundError(f"model {name!r} has no version {text[:40]}")
    return number


def error_body(exc: BaseException, where: str, v2: bool = False) -> tuple[int, dict[str, Any]]:
    """(status, body) of any error: relevo's shape, or V2's `{"error"}` for the V2 routes.
    Server-side failures show only what `failure_body` allows (and a request id)."""
    if not isinstance(exc, RelevoError) or exc.http_status >= 500:
        return failure_body(exc, where)
    body: dict[str, Any] = {"error": str(exc)}
    if not v2 and isinstance(exc, InvalidInputError) and exc.problems:
        body["message"] = exc.message
        body["problems"] = [p.to_dict() for p in exc.problems]
    return exc.http_status, body


def error_headers(status: int, body_unread: bool) -> dict[str, str]:
    """Headers of an error answer: the auth challenge with a 401, and the connection closed
    when the client may still be sending a body the server will not read."""
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if body_unread:
        headers["Connection"] = "close"
    return headers


def asgi_headers(headers: dict[str, str]) -> Iterable[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps(data, default=_plain)
    return Response(body, status_code=status, media_type=JSON, headers=headers)


def _plain(value: Any) -> Any:
    """What orjson does not serialise itself: a NumPy scalar or array as its Python value (a
    report's statistic must not turn an answer into a 500)."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")
