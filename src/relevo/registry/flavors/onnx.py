"""ONNX models (.onnx), run with onnxruntime on the CPU.

ONNX is a safe format: a file is a graph of standard operators plus weights, and loading it runs
no Python code (unlike pickle). Users convert their models themselves (e.g. with skl2onnx's
`to_onnx`); this flavor does not save.

Inputs come in two shapes:

* one 2-D tensor: every feature column, in the frame's order, as one matrix. The graph does not
  name the columns, so `feature_names` is None and the caller supplies them in the right order.
* one tensor per column (skl2onnx does this for a pipeline converted from a DataFrame, e.g. with
  a ColumnTransformer): each column is fed as [n, 1] in the type the input declares, and
  `feature_names` are the input names. skl2onnx rewrites names ("mean radius" becomes
  "mean_radius"); frame columns are matched exactly or by that same rewriting.

Outputs: a classifier has a label output and a probability output, either a tensor (n, k) or a
ZipMap (a list of {class: probability}); the class labels are read from the graph (the ZipMap
node or the classifier node: `classlabels_*`), falling back to 0..k-1. Anything else is a
regressor: its first float output, one value per row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from relevo.errors import InvalidInputError
from relevo.registry.flavors.base import (
    Flavor,
    LoadedModel,
    RawOutput,
    Task,
    classifier_task,
    select_features,
)

_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": object,
}
_FLOAT_TYPES = {"tensor(float)", "tensor(double)", "tensor(float16)"}
_LABEL_TYPES = {"tensor(int64)", "tensor(int32)", "tensor(string)"}


def _dtype(type_name: str, what: str) -> Any:
    if type_name not in _DTYPES:
        raise InvalidInputError(f"{what} has type {type_name}, which relevo cannot feed")
    return _DTYPES[type_name]


def _labels(values: list[Any]) -> list[Any]:
    return [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]


def _graph_class_labels(model_proto: Any, prob_output: str) -> list[Any] | None:
    """Class labels from the ZipMap producing `prob_output` or the last classifier node."""
    from onnx import helper

    zipmap: list[Any] | None = None
    classifier: list[Any] | None = None
    for node in model_proto.graph.node:
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "ZipMap" and prob_output in node.output:
            for key in ("classlabels_int64s", "classlabels_strings"):
                if key in attrs and (values := helper.get_attribute_value(attrs[key])):
                    zipmap = _labels(list(values))
        elif node.op_type.endswith("Classifier"):
            for key in ("classlabels_ints", "classlabels_int64s", "classlabels_strings"):
                if key in attrs and (values := helper.get_attribute_value(attrs[key])):
                    classifier = _labels(list(values))
    return zipmap if zipmap is not None else classifier


class OnnxModel(LoadedModel):
    """An onnxruntime session plus how to feed it and read its outputs."""

    def __init__(self, session: Any, model_proto: Any, path_name: str) -> None:
        self.session = session
        self.path_name = path_name
        inputs = session.get_inputs()
        self._inputs = [(i.name, i.type, list(i.shape or [])) for i in inputs]
        self._per_column = len(inputs) > 1
        if self._per_column:
            for name, type_name, shape in self._inputs:
                _dtype(type_name, f"input {name!r} of {path_name}")
                if len(shape) > 2 or (len(shape) == 2 and shape[1] not in (1, None)):
                    raise InvalidInputError(
                        f"{path_name} has several inputs and {name!r} is not one column wide "
                        f"(shape {shape}); relevo feeds one column per input"
                    )
            self.feature_names = [name for name, _, _ in self._inputs]
        elif len(inputs) == 1:
            _dtype(self._inputs[0][1], f"the input of {path_name}")
            self.feature_names = None
        else:
            raise InvalidInputError(f"{path_name} declares no inputs")
        self._read_outputs(session.get_outputs(), model_proto)

    def _read_outputs(self, outputs: list[Any], model_proto: Any) -> None:
        prob = next((o for o in outputs if o.type.startswith("seq(map(")), None)
        self._zipmap = prob is not None
        label = next(
            (o for o in outputs if o.type in _LABEL_TYPES and len(o.shape or []) == 1), None
        )
        if prob is None and label is not None:
            prob = next(
                (o for o in outputs if o.type in _FLOAT_TYPES and len(o.shape or []) == 2), None
            )
        self.task: Task
        if prob is not None:
            self._output = prob.name
            classes = _graph_class_labels(model_proto, prob.name)
            width = None if self._zipmap else (prob.shape or [None, None])[1]
            if classes is None or (isinstance(width, int) and len(classes) != width):
                if not isinstance(width, int):
                    raise InvalidInputError(
                        f"cannot tell the classes of the ONNX classifier {self.path_name}: "
                        "no class labels in the graph and no fixed probability width"
                    )
                classes = list(range(width))
            self.classes = classes
            self.task = classifier_task(classes)
            return
        value = next((o for o in outputs if o.type in _FLOAT_TYPES), None)
        if value is None:
            raise InvalidInputError(
                f"{self.path_name} has no float output to read predictions from "
                f"(outputs: {', '.join(f'{o.name} {o.type}' for o in outputs)})"
            )
        self._output = value.name
        self.classes = None
        self.task = "regression"

    def _feed(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        if not self._per_column:
            name, type_name, shape = self._inputs[0]
            width = shape[1] if len(shape) == 2 else None
            if isinstance(width, int) and frame.shape[1] != width:
                raise InvalidInputError(
                    f"{self.path_name} expects {width} feature columns, got {frame.shape[1]}"
                )
            dtype = _dtype(type_name, "input")
            matrix = (frame.astype(str) if dtype is object else frame).to_numpy(dtype=dtype)
            return {name: matrix.ravel() if len(shape) == 1 else matrix}
        assert self.feature_names is not None
        columns = select_features(frame, self.feature_names)
        feed: dict[str, np.ndarray] = {}
        for name, type_name, shape in self._inputs:
            dtype = _dtype(type_name, "input")
            series = columns[name]
            values = series.astype(str) if dtype is object else series
            array = values.to_numpy(dtype=dtype)
            feed[name] = array.reshape(-1, 1) if len(shape) != 1 else array
        return feed

    def predict(self, frame: pd.DataFrame) -> RawOutput:
        try:
            (out,) = self.session.run([self._output], self._feed(frame))
        except InvalidInputError:
            raise
        except (ValueError, TypeError) as exc:
            raise InvalidInputError(
                f"cannot convert the input for {self.path_name}: {exc}"
            ) from exc
        except Exception as exc:  # onnxruntime's own errors (wrong shapes, types ...)
            raise InvalidInputError(f"{self.path_name} failed on the input: {exc}") from exc
        if self.classes is None:
            values = np.asarray(out, dtype=np.float64)
            if values.ndim > 1 and values.shape[1] != 1:
                raise InvalidInputError(
                    f"{self.path_name} returned {values.shape[1]} values per row; "
                    "only one value per row is supported"
                )
            return RawOutput(values=values.reshape(len(frame)))
        if self._zipmap:
            proba = np.array(
                [[row[c] for c in self.classes] for row in out], dtype=np.float64
            ).reshape(len(frame), len(self.classes))
        else:
            proba = np.asarray(out, dtype=np.float64)
        return RawOutput(probabilities=proba)


class OnnxFlavor(Flavor):
    """.onnx files, run with onnxruntime on the CPU."""

    name = "onnx"
    extra = "onnx"
    packages = ("onnxruntime", "onnx", "numpy")

    def detect(self, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() == ".onnx"

    def load(self, path: Path, options: dict[str, Any]) -> LoadedModel:
        ort = self.require("onnxruntime")
        onnx = self.require("onnx")
        try:
            model_proto = onnx.load(str(path), load_external_data=False)
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise InvalidInputError(f"cannot load {path.name} as an ONNX model: {exc}") from exc
        return OnnxModel(session, model_proto, path.name)
