"""scikit-learn estimators and pipelines, saved with joblib (pickle) or skops.

joblib/pickle files run arbitrary code when loaded: register only files you trust. skops files
are inspected first: the types they would create are listed, and only those recorded (trusted)
at registration are allowed when the version is loaded again.
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
    as_frame,
    classifier_task,
    read_head,
)

PICKLE_SUFFIXES = {".joblib", ".pkl", ".pickle", ".jbl"}


class EstimatorModel(LoadedModel):
    """Any object with scikit-learn's `predict` / `predict_proba` conventions."""

    def __init__(self, estimator: Any) -> None:
        if not hasattr(estimator, "predict"):
            raise InvalidInputError(
                f"the artifact holds a {type(estimator).__name__}, which has no predict method"
            )
        self.estimator = estimator
        names = getattr(estimator, "feature_names_in_", None)
        self.feature_names = [str(c) for c in names] if names is not None else None
        classes = getattr(estimator, "classes_", None)
        if classes is not None and hasattr(estimator, "predict_proba"):
            self.classes = [c.item() if isinstance(c, np.generic) else c for c in classes]
            self.task = classifier_task(self.classes)
        else:
            self.classes = None
            self.task = "regression"

    def predict(self, frame: pd.DataFrame) -> RawOutput:
        if self.feature_names is not None:
            x: Any = as_frame(frame, self.feature_names)
        else:
            x = frame.to_numpy()
        if self.classes is not None:
            return RawOutput(probabilities=np.asarray(self.estimator.predict_proba(x)))
        return RawOutput(values=np.asarray(self.estimator.predict(x), dtype=np.float64).ravel())


class SklearnFlavor(Flavor):
    """joblib or pickle files of fitted scikit-learn compatible estimators."""

    name = "sklearn"
    packages = ("sklearn", "joblib", "numpy")

    def detect(self, path: Path) -> bool:
        if path.suffix.lower() in PICKLE_SUFFIXES:
            return True
        head = read_head(path, 2)
        # pickle protocol 2+ starts with PROTO (0x80) then the protocol number
        return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5

    def load(self, path: Path, options: dict[str, Any]) -> LoadedModel:
        import joblib

        try:
            estimator = joblib.load(path)
        except ModuleNotFoundError as exc:
            raise InvalidInputError(
                f"cannot load {path.name}: it needs the module {exc.name!r}, which is not installed"
            ) from exc
        except Exception as exc:
            raise InvalidInputError(
                f"cannot load {path.name}: not a valid joblib/pickle file "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        return EstimatorModel(estimator)

    def can_save(self, model: Any) -> bool:
        return hasattr(model, "predict") and hasattr(model, "fit")

    def save(self, model: Any, directory: Path) -> Path:
        import joblib

        path = directory / "model.joblib"
        joblib.dump(model, path)
        return path

    def library_versions(self) -> dict[str, str]:
        return super().library_versions()


class SkopsFlavor(Flavor):
    """skops files: scikit-learn models stored without pickle, loaded with an allow-list."""

    name = "skops"
    extra = "skops"
    packages = ("sklearn", "skops", "numpy")

    def detect(self, path: Path) -> bool:
        return path.suffix.lower() == ".skops"

    def registration_options(self, path: Path) -> dict[str, Any]:
        sio = self.require("skops.io")
        try:
            untrusted = sio.get_untrusted_types(file=path)
        except Exception as exc:
            raise InvalidInputError(f"cannot read {path.name} as a skops file: {exc}") from exc
        return {"trusted_types": sorted(untrusted)}

    def load(self, path: Path, options: dict[str, Any]) -> LoadedModel:
        sio = self.require("skops.io")
        trusted = list(options.get("trusted_types", []))
        try:
            estimator = sio.load(path, trusted=trusted)
        except Exception as exc:
            raise InvalidInputError(f"cannot load {path.name} as a skops file: {exc}") from exc
        return EstimatorModel(estimator)

    def can_save(self, model: Any) -> bool:
        return hasattr(model, "predict") and hasattr(model, "fit")

    def save(self, model: Any, directory: Path) -> Path:
        sio = self.require("skops.io")
        path = directory / "model.skops"
        sio.dump(model, path)
        return path
