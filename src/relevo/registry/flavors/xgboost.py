"""XGBoost models saved with XGBoost's own `save_model` (.json or .ubj).

These formats hold trees and parameters only, no Python objects, so loading one runs no code.
A file written by the scikit-learn wrapper (`XGBClassifier(...).save_model`) carries a
`scikit_learn` attribute and is loaded back through that wrapper; any other file is loaded as a
native `Booster` whose task comes from its objective. XGBoost only trains on class labels
0..k-1, so the classes of an XGBoost classifier are always 0..k-1.

XGBoost can crash the process (segfault) on a damaged file instead of raising, so
`registration_options` reads a new file once in a throwaway child process first; later loads
are of the same bytes (the store checks their sha256).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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
    as_frame,
    classifier_task,
    load_in_child,
    read_head,
)
from relevo.registry.flavors.sklearn import EstimatorModel, mode_option

#: binary objectives, by what the booster predicts: P(class 1), a logit, or the class (0/1)
_BINARY_PROBA = {"binary:logistic"}
_BINARY_MARGIN = {"binary:logitraw"}
_BINARY_HARD = {"binary:hinge"}
#: multiclass objectives: probabilities (n, k), or the class index (probabilities from margins)
_MULTI_PROBA = {"multi:softprob"}
_MULTI_HARD = {"multi:softmax"}

_PROBE = """
import numpy as np, xgboost
booster = xgboost.Booster(model_file=sys.argv[1])
try:
    data = xgboost.DMatrix(np.zeros((1, booster.num_features())))
    booster.predict(data, validate_features=False)
except Exception:
    pass  # only a crash matters here; odd inputs may be refused politely
"""


def _short(exc: BaseException) -> str:
    """The first line of an XGBoost error (the rest is a native stack trace)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class BoosterModel(LoadedModel):
    """A native `xgboost.Booster`; the task comes from its objective."""

    def __init__(self, booster: Any, path_name: str) -> None:
        self.booster = booster
        try:
            config = json.loads(booster.save_config())["learner"]
        except (KeyError, ValueError) as exc:
            raise InvalidInputError(
                f"cannot read the configuration of the XGBoost model {path_name}: {exc}"
            ) from exc
        self.objective: str = str(config.get("objective", {}).get("name", ""))
        params = config.get("learner_model_param", {})
        num_class = int(params.get("num_class", "0") or 0)
        num_target = int(params.get("num_target", "1") or 1)
        if num_target > 1:
            raise InvalidInputError(
                f"{path_name} is a multi-target XGBoost model ({num_target} targets); "
                "only single-target models are supported"
            )
        names = booster.feature_names
        self.feature_names = [str(n) for n in names] if names else None
        self.n_features = int(booster.num_features())
        types = booster.feature_types or []
        self._categorical = any(t == "c" for t in types)
        self.task: Task
        if self.objective in _BINARY_PROBA | _BINARY_MARGIN | _BINARY_HARD:
            self.classes = [0, 1]
            self.task = "binary"
        elif self.objective in _MULTI_PROBA | _MULTI_HARD:
            if num_class < 2:
                raise InvalidInputError(
                    f"the XGBoost model {path_name} has objective {self.objective} but no num_class"
                )
            self.classes = list(range(num_class))
            self.task = classifier_task(self.classes)
        else:
            # reg:*, count:*, survival:*, rank:* ... : one number per row
            self.classes = None
            self.task = "regression"

    def _dmatrix(self, frame: pd.DataFrame) -> Any:
        import xgboost

        if self.feature_names is not None:
            return xgboost.DMatrix(
                as_frame(frame, self.feature_names), enable_categorical=self._categorical
            )
        # no names in the model: positional, and do not let the frame's names stick to it
        return xgboost.DMatrix(frame.to_numpy())

    def predict(self, frame: pd.DataFrame) -> RawOutput:
        data = self._dmatrix(frame)
        obj = self.objective
        if obj in _BINARY_PROBA or obj in _BINARY_MARGIN or obj in _BINARY_HARD:
            if obj in _BINARY_MARGIN:
                logit = np.asarray(self.booster.predict(data), dtype=np.float64).ravel()
                p1 = 1.0 / (1.0 + np.exp(-logit))
            else:
                p1 = np.asarray(self.booster.predict(data), dtype=np.float64).ravel()
            return RawOutput(probabilities=np.column_stack([1.0 - p1, p1]))
        if obj in _MULTI_PROBA:
            proba = np.asarray(self.booster.predict(data), dtype=np.float64)
            return RawOutput(probabilities=proba.reshape(len(frame), -1))
        if obj in _MULTI_HARD:
            # multi:softmax predicts the class index; the margins give the probabilities
            margin = np.asarray(
                self.booster.predict(data, output_margin=True), dtype=np.float64
            ).reshape(len(frame), -1)
            exp = np.exp(margin - margin.max(axis=1, keepdims=True))
            return RawOutput(probabilities=exp / exp.sum(axis=1, keepdims=True))
        values = np.asarray(self.booster.predict(data), dtype=np.float64)
        if values.ndim > 1 and values.shape[1] != 1:
            raise InvalidInputError(
                f"the XGBoost model returned {values.shape[1]} values per row; "
                "only one value per row is supported"
            )
        return RawOutput(values=values.ravel())


class XGBoostFlavor(Flavor):
    """Files written by XGBoost's `save_model`: JSON (.json) or UBJSON (.ubj)."""

    name = "xgboost"
    extra = "xgboost"
    packages = ("xgboost", "numpy")

    def detect(self, path: Path) -> bool:
        if not path.is_file():
            return False
        suffix = path.suffix.lower()
        if suffix == ".ubj":
            return True
        if suffix == ".json":
            return b'"learner"' in read_head(path, 4096)
        return False

    def registration_options(self, path: Path, trust: Sequence[str] = ()) -> dict[str, Any]:
        """Read the new file once in a child process (XGBoost may crash on a damaged file)."""
        super().registration_options(path, trust)  # refuses --trust
        self.require("xgboost")
        load_in_child(path, _PROBE, "an XGBoost model")
        return {}

    def load(self, path: Path, options: dict[str, Any]) -> LoadedModel:
        xgboost = self.require("xgboost")
        try:
            booster = xgboost.Booster(model_file=str(path))
        except Exception as exc:
            raise InvalidInputError(
                f"cannot load {path.name} as an XGBoost model: {_short(exc)}"
            ) from exc
        wrapper = self._sklearn_wrapper(booster, xgboost)
        if wrapper is None:
            return BoosterModel(booster, path.name)
        try:
            wrapper.load_model(str(path))
        except Exception as exc:
            raise InvalidInputError(
                f"cannot load {path.name} as an XGBoost scikit-learn model: {_short(exc)}"
            ) from exc
        return EstimatorModel(wrapper, mode_option(options))  # as its rehearsal recorded

    @staticmethod
    def _sklearn_wrapper(booster: Any, xgboost: Any) -> Any:
        """An empty XGBClassifier/XGBRegressor when the file was saved by one, else None."""
        raw = booster.attr("scikit_learn")
        if not raw:
            return None
        try:
            estimator_type = json.loads(raw).get("_estimator_type")
        except (ValueError, AttributeError):
            return None
        if estimator_type == "classifier":
            return xgboost.XGBClassifier()
        if estimator_type == "regressor":
            return xgboost.XGBRegressor()
        return None

    def can_save(self, model: Any) -> bool:
        try:
            import xgboost
        except ImportError:
            return False
        if isinstance(model, xgboost.Booster):
            return True
        if isinstance(model, xgboost.XGBClassifier | xgboost.XGBRegressor):
            try:
                model.get_booster()
            except Exception:  # not fitted
                return False
            return True
        return False

    def save(self, model: Any, directory: Path) -> Path:
        self.require("xgboost")
        path = directory / "model.json"
        model.save_model(str(path))
        return path
