"""relevo: take a trained model into production and keep it healthy there.

The public API is named here; everything else is implementation. Names load lazily so that
`import relevo` (and the CLI's start) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Relevo": "relevo.context",
    "Registry": "relevo.registry.registry",
    "ModelVersion": "relevo.registry.types",
    "Signature": "relevo.registry.signature",
    "Deployment": "relevo.routing.deployment",
    "Client": "relevo.client",
    "make_churn": "relevo.datasets",
    "drift": "relevo.monitoring.drift",
    "RelevoError": "relevo.errors",
    "NotFoundError": "relevo.errors",
    "InvalidInputError": "relevo.errors",
    "ConflictError": "relevo.errors",
    "IntegrityError": "relevo.errors",
    "UnavailableError": "relevo.errors",
    "MissingExtraError": "relevo.errors",
    "AuthError": "relevo.errors",
}

__all__ = [
    "AuthError",
    "Client",
    "ConflictError",
    "Deployment",
    "IntegrityError",
    "InvalidInputError",
    "MissingExtraError",
    "ModelVersion",
    "NotFoundError",
    "Registry",
    "Relevo",
    "RelevoError",
    "Signature",
    "UnavailableError",
    "__version__",
    "drift",
    "make_churn",
]

if TYPE_CHECKING:
    from relevo.client import Client
    from relevo.context import Relevo
    from relevo.datasets import make_churn
    from relevo.errors import (
        AuthError,
        ConflictError,
        IntegrityError,
        InvalidInputError,
        MissingExtraError,
        NotFoundError,
        RelevoError,
        UnavailableError,
    )
    from relevo.monitoring.drift import drift
    from relevo.registry.registry import Registry
    from relevo.registry.signature import Signature
    from relevo.registry.types import ModelVersion
    from relevo.routing.deployment import Deployment


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'relevo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
