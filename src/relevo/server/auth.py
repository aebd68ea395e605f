"""Optional bearer tokens: RELEVO_API_TOKEN for predictions, RELEVO_ADMIN_TOKEN for changes."""

from __future__ import annotations

import hmac
from enum import Enum

from relevo.errors import AuthError
from relevo.settings import Settings


class Access(Enum):
    PREDICT = "predict"  # predict, infer, feedback, reads: the API or the admin token
    ADMIN = "admin"  # everything that changes state: the admin token


def _matches(given: str, expected: str | None) -> bool:
    return expected is not None and hmac.compare_digest(given.encode(), expected.encode())


def check(authorization: str | None, access: Access, settings: Settings) -> None:
    """Raise AuthError (401 without/with a wrong token, 403 with too weak a token)."""
    api, admin = settings.api_token, settings.admin_token
    required = api if access is Access.PREDICT else admin
    if required is None:
        return
    if not authorization:
        raise AuthError("missing bearer token: send 'Authorization: Bearer <token>'", 401)
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError("malformed Authorization header: expected 'Bearer <token>'", 401)
    if _matches(token, admin):
        return  # the admin token may do everything
    if _matches(token, api):
        if access is Access.PREDICT:
            return
        raise AuthError("this token may predict but not change state: use the admin token", 403)
    raise AuthError("invalid token", 401)
