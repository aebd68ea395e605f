"""Optional bearer tokens: RELEVO_API_TOKEN for predictions and reads, RELEVO_ADMIN_TOKEN for
changes (and a rollout's status and history, `Access.ADMIN` too).

| tokens set      | predict, infer, reads      | changes (PUT /v1/deployments/...) |
|-----------------|----------------------------|-----------------------------------|
| none            | open                       | open (loopback only, see `serve`) |
| API only        | the API token              | the API token                     |
| admin only      | open                       | the admin token                   |
| both            | the API or the admin token | the admin token (API token: 403)  |

Once any token is set, no change goes through without one. Only headers are read here, so
every route checks its token before it reads a byte of the request body.
"""

from __future__ import annotations

import hmac
from enum import Enum

from starlette.types import Scope

from relevo.errors import AuthError
from relevo.settings import Settings


class Access(Enum):
    PREDICT = "predict"  # predict, infer, reads
    ADMIN = "admin"  # everything that changes state


def _matches(given: str, expected: str | None) -> bool:
    return expected is not None and hmac.compare_digest(given.encode(), expected.encode())


def _token(authorization: str | None) -> str:
    """The bearer token of an Authorization header, or AuthError (401)."""
    if not authorization:
        raise AuthError("missing bearer token: send 'Authorization: Bearer <token>'", 401)
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError("malformed Authorization header: expected 'Bearer <token>'", 401)
    return token


def check(authorization: str | None, access: Access, settings: Settings) -> None:
    """Raise AuthError (401 without/with a wrong token, 403 with too weak a token)."""
    api, admin = settings.api_token, settings.admin_token
    if access is Access.PREDICT and api is None:
        return  # predictions are open unless an API token is set
    if api is None and admin is None:
        return
    token = _token(authorization)
    if _matches(token, admin):
        return  # the admin token may do everything
    if _matches(token, api):
        if access is Access.PREDICT or admin is None:
            return  # with no admin token, the API token guards changes too
        raise AuthError(
            "this request needs the admin token: the API token may predict and read models "
            "and deployments, not change them nor read a rollout's status and history",
            403,
        )
    raise AuthError("invalid token", 401)


def may_change(authorization: str | None, settings: Settings) -> bool:
    """Whether a caller may change state (what `check(..., Access.ADMIN, ...)` lets through)."""
    try:
        check(authorization, Access.ADMIN, settings)
    except AuthError:
        return False
    return True


def may_see_details(authorization: str | None, settings: Settings) -> bool:
    """Whether a caller may read operational details (readiness reasons, served versions):
    always when no token is set, else with either token."""
    api, admin = settings.api_token, settings.admin_token
    if api is None and admin is None:
        return True
    try:
        token = _token(authorization)
    except AuthError:
        return False
    return _matches(token, admin) or _matches(token, api)


def may_see_internals(authorization: str | None, settings: Settings) -> bool:
    """Whether a caller may read what the server log says of a failure (a model's artifact
    path, its library's error): only with the token that changes state; never without tokens,
    when the caller is anyone."""
    if settings.api_token is None and settings.admin_token is None:
        return False
    return may_change(authorization, settings)


def foreign(scope: Scope) -> str | None:
    """Why a request to a server without tokens comes from another site's page, or None.
    Without tokens the server trusts whoever reaches it (loopback, or a trusted network with
    --insecure), but a web page in that person's browser also reaches it: a cross-site form
    post (no CORS preflight) changed deployments, silences and labels. So a request that
    changes state must come from the server's own origin: browsers send Origin on such
    requests, other clients none. Behind a proxy the origin is the proxy's host (Host, or
    X-Forwarded-Host when the proxy rewrites Host)."""
    if scope["method"] in ("GET", "HEAD", "OPTIONS"):
        return None
    origin = host = forwarded = b""
    for key, value in scope["headers"]:
        if key == b"origin":
            origin = value
        elif key == b"host":
            host = value
        elif key == b"x-forwarded-host":
            forwarded = value
    if not origin:
        return None
    text = origin.decode("latin-1")
    own = origin.partition(b"://")[2].lower()
    if own and own in (host.lower(), forwarded.lower()):
        return None
    return f"a request from {text[:100]!r} may not change this server's state"
