"""The names of models and deployments: one rule, checked alike by the registry, the server,
the CLI and the Python client (which imports this without the store or the models)."""

from __future__ import annotations

import re

from relevo.errors import InvalidInputError, NotFoundError

#: letters, digits, '.', '_', '-', starting with a letter or digit, up to 200 characters
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def check_name(name: str, what: str = "deployment") -> None:
    """NotFoundError for a name that no model or deployment can have (outside the name
    alphabet, or too long), without asking the store."""
    if not NAME_RE.fullmatch(name):
        raise NotFoundError(
            f"{what} {name[:80]!r}{'...' if len(name) > 80 else ''} not found: names are "
            "letters, digits, '.', '_' and '-' (up to 200 characters)"
        )


def validate_name(name: str) -> None:
    """InvalidInputError for a deployment name outside the rule, as `relevo deploy` says it."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidInputError(
            f"invalid deployment name {name!r}: use letters, digits, '.', '_' or '-' "
            "(up to 200 characters, starting with a letter or digit)"
        )
