"""Model flavors: one module per family, registered here by name.

Adding a flavor: write a `Flavor` subclass in its own module and add one line to `_FLAVORS`.
Detection tries flavors in this order, so the more specific formats come first.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from relevo.errors import InvalidInputError
from relevo.registry.flavors.base import Flavor, LoadedModel, RawOutput, Task

_FLAVORS: dict[str, str] = {
    "mlflow": "relevo.registry.flavors.mlflow:MlflowFlavor",
    "onnx": "relevo.registry.flavors.onnx:OnnxFlavor",
    "skops": "relevo.registry.flavors.skops:SkopsFlavor",
    "xgboost": "relevo.registry.flavors.xgboost:XGBoostFlavor",
    "lightgbm": "relevo.registry.flavors.lightgbm:LightGBMFlavor",
    "sklearn": "relevo.registry.flavors.sklearn:SklearnFlavor",
}

_cache: dict[str, Flavor] = {}


def flavor_names() -> list[str]:
    return list(_FLAVORS)


def get_flavor(name: str) -> Flavor:
    """The flavor called `name`, or an error listing the known ones."""
    if name not in _FLAVORS:
        raise InvalidInputError(f"unknown flavor {name!r}; known flavors: {', '.join(_FLAVORS)}")
    if name not in _cache:
        module_name, _, cls_name = _FLAVORS[name].partition(":")
        cls = getattr(importlib.import_module(module_name), cls_name)
        _cache[name] = cls()
    return _cache[name]


def detect_flavor(path: Path) -> Flavor:
    """The flavor of the artifact at `path`, from its name and first bytes."""
    if not path.exists():
        raise InvalidInputError(f"artifact not found: {path}")
    for name in _FLAVORS:
        flavor = get_flavor(name)
        if flavor.detect(path):
            return flavor
    raise InvalidInputError(
        f"cannot tell the flavor of {path}: not a joblib/pickle, skops, XGBoost, LightGBM, "
        f"ONNX file or an MLflow model directory; pass --flavor ({', '.join(_FLAVORS)})"
    )


def flavor_for_object(model: Any) -> Flavor:
    """The flavor that saves an in-memory `model` (Python API registration)."""
    module = type(model).__module__.split(".")[0]
    preferred = {"xgboost": "xgboost", "lightgbm": "lightgbm", "onnx": "onnx"}.get(module)
    if preferred is not None:
        flavor = get_flavor(preferred)
        if flavor.can_save(model):
            return flavor
    flavor = get_flavor("sklearn")
    if flavor.can_save(model):
        return flavor
    raise InvalidInputError(
        f"cannot register an object of type {type(model).__name__}: pass a fitted estimator "
        "with fit/predict, or a path to a saved artifact"
    )


__all__ = [
    "Flavor",
    "LoadedModel",
    "RawOutput",
    "Task",
    "detect_flavor",
    "flavor_for_object",
    "flavor_names",
    "get_flavor",
]
