"""An optional compiled form of a scikit-learn model: ONNX, run by onnxruntime.

A scikit-learn pipeline spends most of a small call in Python (input checks, the pipeline's
steps, output wrapping): ~250-450 us for one row of StandardScaler + LogisticRegression on this
project's 2-core machine, against ~20 us for the same graph in onnxruntime, which also releases
the GIL while it runs. Registration with `compile="onnx"` (`relevo models register ...
--compile onnx`) converts the fitted estimator with skl2onnx, in float64 throughout
(`DoubleTensorType`: float32 would cost ~1e-7 of every probability), runs the result on every
reference row beside the estimator, and records it only when every output is within
`TOLERANCE` of the estimator's. Loading a version converts it again (the conversion is
deterministic; milliseconds for a linear pipeline); when that fails (skl2onnx missing where it
is served, say), the version is served by scikit-learn with a `CompiledFormWarning`.

Only models fed a float64 matrix (every input a number) are compiled: that is the input the
graph takes. Any estimator skl2onnx converts qualifies; the others are refused at registration
with skl2onnx's reason.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import numpy as np

from relevo.errors import InvalidInputError, MissingExtraError
from relevo.registry.flavors.base import RawOutput

#: the compiled forms there are (`--compile`)
KINDS = ("onnx",)
#: the largest absolute difference from the estimator allowed on any reference output
#: (probabilities; regression values relative to max(1, |value|))
TOLERANCE = 1e-6


class CompiledFormWarning(UserWarning):
    """A version registered with a compiled form is served without it (it could not be built)."""


class CompiledModel:
    """An onnxruntime session of a converted estimator: a float64 matrix in, `RawOutput` out."""

    def __init__(self, session: Any, classifier: bool) -> None:
        self.session = session
        self.classifier = classifier
        self._input = session.get_inputs()[0].name
        outputs = session.get_outputs()
        wanted = (
            # skl2onnx without ZipMap: a label tensor, then the (n, k) probability tensor
            [o for o in outputs if o.type == "tensor(double)" and len(o.shape or []) == 2]
            if classifier
            else [o for o in outputs if o.type == "tensor(double)"]
        )
        if not wanted:
            shown = ", ".join(f"{o.name} {o.type}" for o in outputs)
            raise InvalidInputError(
                f"the converted model has no float64 {'probability ' if classifier else ''}"
                f"output to read (outputs: {shown}). Register it without --compile"
            )
        self._output = wanted[0].name

    def run(self, x: np.ndarray) -> RawOutput:
        """The outputs for the rows of `x` (float64, columns in the signature's order)."""
        (out,) = self.session.run(
            [self._output], {self._input: np.ascontiguousarray(x, dtype=np.float64)}
        )
        if self.classifier:
            return RawOutput(probabilities=np.asarray(out, dtype=np.float64))
        return RawOutput(values=np.asarray(out, dtype=np.float64).reshape(len(x)))


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(module, "onnx", "Compiling a model to ONNX") from exc


def compile_onnx(estimator: Any, n_features: int, classifier: bool) -> CompiledModel:
    """`estimator` converted to ONNX (float64) and loaded in an onnxruntime session."""
    skl2onnx = _require("skl2onnx")
    ort = _require("onnxruntime")
    from skl2onnx.common.data_types import DoubleTensorType

    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    options = {id(final): {"zipmap": False}} if classifier else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skl2onnx's notes on opsets and feature names
            proto = skl2onnx.to_onnx(
                estimator,
                initial_types=[("X", DoubleTensorType([None, n_features]))],
                options=options,
            )
    except Exception as exc:
        raise InvalidInputError(
            f"skl2onnx cannot convert this {type(estimator).__name__} to ONNX: "
            f"{_reason(exc)}. Register it without --compile"
        ) from exc
    so = ort.SessionOptions()
    # one thread: the server scores one micro-batch at a time per model, and pool threads that
    # spin between calls would take the cores the event loop needs
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(
            proto.SerializeToString(), so, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise InvalidInputError(
            f"onnxruntime cannot run the converted model in float64: {_reason(exc)}. "
            "Register it without --compile"
        ) from exc
    return CompiledModel(session, classifier)


def _reason(exc: Exception) -> str:
    """The first line of a library's error (their messages run to pages of graph detail)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def max_difference(compiled: RawOutput, truth: RawOutput) -> float:
    """The largest difference between two models' outputs on the same rows (inf when their
    shapes or missing values disagree): probabilities absolute, values relative to
    max(1, |value|)."""
    pairs = (
        (compiled.probabilities, truth.probabilities, False),
        (compiled.values, truth.values, True),
    )
    worst = 0.0
    for got, want, relative in pairs:
        if (got is None) != (want is None):
            return float("inf")
        if got is None or want is None:
            continue
        a, b = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
        if a.shape != b.shape or not np.array_equal(np.isnan(a), np.isnan(b)):
            return float("inf")
        if a.size == 0:
            continue
        diff = np.abs(np.nan_to_num(a - b, nan=0.0))
        if relative:
            diff = diff / np.maximum(1.0, np.abs(np.nan_to_num(b, nan=0.0)))
        worst = max(worst, float(diff.max()))
    return worst


def versions() -> dict[str, str]:
    """The versions of the libraries a compiled form is built and run with."""
    out: dict[str, str] = {}
    for name in ("skl2onnx", "onnxruntime"):
        try:
            out[name] = str(importlib.import_module(name).__version__)
        except ImportError:
            out[name] = "missing"
    return out
