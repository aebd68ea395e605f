"""The Open Inference Protocol V2's description of a model: its metadata and the outputs it
answers with, from the registered version."""

from __future__ import annotations

from typing import Any

import numpy as np

from relevo.registry.types import ModelVersion

_KIND_DATATYPES = {"number": "FP64", "integer": "INT64", "boolean": "BOOL", "string": "BYTES"}


# ---------------------------------------------------------------------------- metadata


def label_datatype(classes: list[Any] | None) -> str:
    """The V2 datatype of a classifier's `label` output, from the type of its classes."""
    if not classes:
        return "BYTES"
    if all(isinstance(c, (bool, np.bool_)) for c in classes):
        return "BOOL"
    if all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in classes):
        return "INT64"
    if all(isinstance(c, (int, float, np.integer, np.floating)) for c in classes):
        return "FP64"
    return "BYTES"


def outputs_of(version: ModelVersion) -> list[dict[str, Any]]:
    """The output tensors a model answers with, in their default order."""
    ident = {"name": "id", "datatype": "BYTES", "shape": [-1]}
    if version.task == "regression":
        return [{"name": "value", "datatype": "FP64", "shape": [-1]}, ident]
    label = {"name": "label", "datatype": label_datatype(version.classes), "shape": [-1]}
    if version.task == "binary":
        return [{"name": "probability", "datatype": "FP64", "shape": [-1]}, label, ident]
    k = len(version.classes or ())
    return [{"name": "probabilities", "datatype": "FP64", "shape": [-1, k]}, label, ident]


def model_metadata(name: str, version: ModelVersion) -> dict[str, Any]:
    """The V2 model metadata of deployment `name` serving `version`."""
    return {
        "name": name,
        "versions": [str(version.version)],
        "platform": f"relevo-{version.flavor}",
        "inputs": [
            {"name": c.name, "datatype": _KIND_DATATYPES[c.kind], "shape": [-1]}
            for c in version.signature.columns
        ],
        "outputs": outputs_of(version),
    }
