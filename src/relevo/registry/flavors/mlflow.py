"""MLflow model directories (a folder with an `MLmodel` file), as written by `mlflow.*.save_model`.

A model that MLflow saved with its `sklearn` flavor is loaded as the native estimator, so class
labels and `predict_proba` are kept. Any other model is loaded as a generic `pyfunc`, whose
`predict` returns one array: a 2-D output whose rows sum to 1 is read as class probabilities
(classes 0..k-1), one value per row as a regression. That decision is made when the model is
loaded, from the saved input example (run once) or else the output signature; a model saved
with neither is taken as a regressor.

Loading an MLflow model may unpickle Python objects (cloudpickle/pickle), which runs code:
register only models you trust. relevo does not save MLflow models; log them with MLflow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from relevo.errors import InvalidInputError
from relevo.registry.artifacts import refuse_symlinks
from relevo.registry.flavors.base import (
    Flavor,
    LoadedModel,
    RawOutput,
    Task,
    as_frame,
    classifier_task,
)
from relevo.registry.flavors.sklearn import EstimatorModel, mode_option

MLMODEL = "MLmodel"


def _as_matrix(output: Any, what: str) -> np.ndarray:
    """A pyfunc output (array, DataFrame, Series, list) as a float array."""
    if isinstance(output, pd.DataFrame | pd.Series):
        output = output.to_numpy()
    try:
        array = np.asarray(output, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"{what} returned non-numeric predictions ({type(output).__name__}); relevo needs "
            "probabilities or numbers"
        ) from exc
    if array.ndim > 2:
        raise InvalidInputError(f"{what} returned a {array.ndim}-D output; expected 1-D or 2-D")
    return array


def _looks_like_probabilities(array: np.ndarray) -> bool:
    return (
        array.ndim == 2
        and array.shape[1] >= 2
        and array.shape[0] > 0
        and bool(np.all(np.isfinite(array)))
        and bool(np.all(array >= -1e-9))
        and bool(np.allclose(array.sum(axis=1), 1.0, atol=1e-4))
    )


def _signature_width(signature: Any) -> int | None:
    """Number of output columns the signature declares (None when unknown)."""
    outputs = getattr(signature, "outputs", None)
    if outputs is None:
        return None
    specs = list(outputs.inputs)
    if len(specs) == 1 and hasattr(specs[0], "shape"):
        shape: tuple[int, ...] = tuple(specs[0].shape or ())
        if len(shape) == 1:
            return 1
        if len(shape) == 2 and shape[1] > 0:
            return int(shape[1])
        return None
    return len(specs) or None


class PyfuncModel(LoadedModel):
    """An `mlflow.pyfunc` model; probabilities or values decided at load (see the module)."""

    def __init__(self, pyfunc: Any, info: Any, path: Path) -> None:
        self.pyfunc = pyfunc
        self.what = f"the MLflow model {path.name}"
        schema = getattr(info.signature, "inputs", None) if info.signature else None
        if schema is not None and schema.has_input_names():
            self.feature_names = [str(n) for n in schema.input_names()]
        else:
            self.feature_names = None
        width = self._width_from_example(info, path)
        if width is None:
            width = _signature_width(info.signature)
        self.task: Task
        if width is not None and width >= 2:
            self.classes = list(range(width))
            self.task = classifier_task(self.classes)
        else:
            self.classes = None
            self.task = "regression"

    def _width_from_example(self, info: Any, path: Path) -> int | None:
        """Run the saved input example once: k >= 2 when it gives probabilities, else 1."""
        try:
            example = info.load_input_example(str(path))
        except Exception:
            return None
        if example is None:
            return None
        try:
            output = _as_matrix(self.pyfunc.predict(example), self.what)
        except Exception as exc:
            raise InvalidInputError(
                f"{self.what} fails on its own saved input example: {exc}"
            ) from exc
        if _looks_like_probabilities(output):
            return int(output.shape[1])
        if output.ndim == 2 and output.shape[1] > 1:
            raise InvalidInputError(
                f"{self.what} returns {output.shape[1]} columns that are not probabilities; "
                "relevo supports classifiers (probabilities) and one value per row"
            )
        return 1

    def predict(self, frame: pd.DataFrame) -> RawOutput:
        x = as_frame(frame, self.feature_names)
        output = _as_matrix(self.pyfunc.predict(x), self.what)
        if self.classes is not None:
            if output.ndim != 2 or output.shape[1] != len(self.classes):
                raise InvalidInputError(
                    f"{self.what} returned output of shape {output.shape}; expected "
                    f"probabilities for {len(self.classes)} classes"
                )
            return RawOutput(probabilities=output)
        if output.ndim == 2 and output.shape[1] != 1:
            raise InvalidInputError(
                f"{self.what} returned {output.shape[1]} values per row; it was registered as "
                "a regressor (save it with an input_example or signature to register a "
                "classifier)"
            )
        return RawOutput(values=output.reshape(len(frame)))


class MlflowFlavor(Flavor):
    """A directory holding an MLflow model (`MLmodel` plus its files)."""

    name = "mlflow"
    extra = "mlflow"
    packages = ("mlflow", "sklearn", "numpy")

    def detect(self, path: Path) -> bool:
        return path.is_dir() and (path / MLMODEL).is_file()

    def load(self, path: Path, options: dict[str, Any]) -> LoadedModel:
        self.require("mlflow")
        from mlflow.models import Model

        if not self.detect(path):
            raise InvalidInputError(f"{path} is not an MLflow model directory (no {MLMODEL})")
        refuse_symlinks(path)  # before MLflow reads a file through one
        try:
            info = Model.load(str(path))
        except Exception as exc:
            raise InvalidInputError(f"cannot read {path.name}/{MLMODEL}: {exc}") from exc
        if "sklearn" in info.flavors:
            return self._load_sklearn(path, info, options)
        pyfunc = self._load(path, "pyfunc")
        return PyfuncModel(pyfunc, info, path)

    def _load(self, path: Path, kind: str) -> Any:
        module = self.require(f"mlflow.{kind}")
        try:
            return module.load_model(str(path))
        except ModuleNotFoundError as exc:
            raise InvalidInputError(
                f"cannot load the MLflow model {path.name}: it needs the module {exc.name!r}, "
                "which is not installed"
            ) from exc
        except Exception as exc:
            raise InvalidInputError(
                f"cannot load the MLflow model {path.name} ({kind}): {exc}"
            ) from exc

    def _load_sklearn(self, path: Path, info: Any, options: dict[str, Any]) -> LoadedModel:
        estimator = self._load(path, "sklearn")
        model = EstimatorModel(estimator, mode_option(options))
        if model.feature_names is None:
            # fitted on an array: the saved signature names its inputs, in order
            schema = getattr(info.signature, "inputs", None) if info.signature else None
            if schema is not None and schema.has_input_names():
                model.feature_names = [str(n) for n in schema.input_names()]
        return model
