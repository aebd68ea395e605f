"""The errors relevo raises, one small hierarchy for every door.

    RelevoError
    ├── NotFoundError        a model, version, deployment or prediction that does not exist
    ├── InvalidInputError    bad user input: a file, a column, a request body (carries `problems`)
    │   └── PayloadTooLargeError  a request body over the size limit (413)
    ├── ConflictError        the request clashes with the current state
    ├── IntegrityError       stored data is not what it should be (an artifact's sha256 changed)
    ├── UnavailableError     a dependency cannot be reached (database, optional library)
    │   └── MissingExtraError    an optional dependency is not installed (names the extra)
    └── AuthError            a missing or wrong token (`status` 401 or 403)

The core raises these; the HTTP layer maps each to a status code and the CLI to an exit code
and a one-line message, once, in one place each.

What an HTTP client is told: the message of a client error (4xx) is about the client's own
request and is answered as it is. The message of a server-side failure (5xx) often names what a
client must not learn (a database host, a file path, an exception's text): it goes to the server
log only, and the client reads `public_message()`, a text written to be shown (`public=`), or
nothing beyond the status and a request id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


class RelevoError(Exception):
    """Base class of every error relevo raises on purpose."""

    http_status = 500
    exit_code = 1

    def __init__(self, message: str, *, public: bool | str = False) -> None:
        super().__init__(message)
        self.message = message
        #: for a server-side failure: True when `message` may be shown to an HTTP client as it
        #: is, or the text to show instead; False: show nothing of it
        self.public = public

    def __str__(self) -> str:
        return self.message

    def public_message(self) -> str | None:
        """What an HTTP client may read about this error (None: the status alone)."""
        if self.http_status < 500 or self.public is True:
            return str(self)
        return self.public or None


class NotFoundError(RelevoError):
    http_status = 404
    exit_code = 3


@dataclass(frozen=True)
class Problem:
    """One problem in user input: where it is (row, column or field) and what is wrong."""

    message: str
    row: int | None = None
    column: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: a request parameter, option or setting (not a data column): named in the error's
    #: summary (`invalid since 'yesterday'`), so the text does not repeat it
    option: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.row is not None:
            out["row"] = self.row
        if self.column is not None:
            out["column"] = self.column
        if self.option is not None:
            out["field"] = self.option
        out["message"] = self.message
        return out

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class InvalidInputError(RelevoError):
    http_status = 422
    exit_code = 2

    def __init__(
        self, message: str, problems: Sequence[Problem] = (), total: int | None = None
    ) -> None:
        super().__init__(message)
        self.problems = list(problems)
        #: how many problems there were in all (`problems` may list only the first ones)
        self.total = max(total if total is not None else 0, len(self.problems))

    def __str__(self) -> str:
        if not self.problems:
            return self.message
        shown = "; ".join(str(p) for p in self.problems[:10])
        hidden = self.total - min(len(self.problems), 10)
        more = f" (and {hidden} more)" if hidden > 0 else ""
        return f"{self.message}: {shown}{more}"


class PayloadTooLargeError(InvalidInputError):
    """A request body over the server's size limit."""

    http_status = 413


class ConflictError(RelevoError):
    http_status = 409
    exit_code = 4


class IntegrityError(RelevoError):
    http_status = 500
    exit_code = 5


class UnavailableError(RelevoError):
    http_status = 503
    exit_code = 6


class MissingExtraError(UnavailableError):
    """An optional dependency is missing; the message names the extra that brings it."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed. "
            f"Install it with: pip install 'relevo[{extra}]'",
            public=True,  # names a package and an extra, nothing of the host
        )
        self.package = package
        self.extra = extra


class AuthError(RelevoError):
    exit_code = 7

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.http_status = status
