"""LightGBM models saved as LightGBM's own text model files.

A model file holds trees and parameters only, so loading one runs no code. Two things a native
file does not keep:

* class labels: a native file knows classes 0..k-1 only. An `LGBMClassifier` trained on other
  labels (strings, 1/2, ...) is therefore not saved by this flavor; register it as a joblib file
  (the sklearn flavor), which keeps `classes_`.
* feature names as written: LightGBM replaces spaces in feature names by underscores
  ("mean radius" is stored as "mean_radius"). `feature_names` reports the stored names and
  `predict` matches frame columns to them exactly or, failing that, by that same rewriting.

LightGBM can abort or crash the whole process (not raise) on a damaged file. So `load` first
checks the file's structure in Python (this catches truncated files), and
`registration_options` reads a new file once in a throwaway child process, so a damaged file is
refused at registration; later loads are of the same bytes (the store checks their sha256).
"""

from __future__ import annotations

import re
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
    classifier_task,
    load_in_child,
    read_head,
    select_features,
)

_BINARY = {"binary"}
_MULTICLASS = {"multiclass", "softmax", "multiclassova", "multiclass_ova", "ova", "ovr"}
_AUTO_NAME = re.compile(r"Column_\d+")


def _check_model_text(data: bytes, path_name: str) -> dict[str, str]:
    """Check the structure LightGBM relies on (it aborts on truncated trees); return the header."""
    bad = f"{path_name} is not a complete LightGBM model file"
    start = data.find(b"\nTree=")
    end = data.find(b"\nend of trees")
    if start < 0 or end < 0:
        raise InvalidInputError(f"{bad}: no trees, or no 'end of trees' marker (truncated?)")
    header: dict[str, str] = {}
    for line in data[:start].decode("utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            header[key.strip()] = value.strip()
    if "tree_sizes" in header:
        try:
            sizes = [int(s) for s in header["tree_sizes"].split()]
        except ValueError:
            raise InvalidInputError(f"{bad}: unreadable tree_sizes") from None
        pos = start + 1
        for size in sizes:
            block = data[pos : pos + size]
            if (
                len(block) != size
                or not block.startswith(b"Tree=")
                or b"\nleaf_value=" not in block
                or b"\nnum_leaves=" not in block
            ):
                raise InvalidInputError(f"{bad}: a tree is cut or damaged")
            pos += size
        if not data[pos:].startswith(b"end of trees"):
            raise InvalidInputError(f"{bad}: trees do not end where tree_sizes says")
    # LightGBM reads the parameters section up to its end marker, past the data if cut
    if b"\nparameters:" in data[end:] and b"\nend of parameters" not in data[end:]:
        raise InvalidInputError(f"{bad}: the parameters section is cut")
    return header


_PROBE = """
import numpy as np, lightgbm
booster = lightgbm.Booster(model_file=sys.argv[1])
try:
    booster.predict(np.zeros((1, booster.num_feature())))
except Exception:
    pass  # only a crash matters here; odd inputs may be refused politely
"""


class LightGBMModel(LoadedModel):
    """A `lightgbm.Booster`; task and classes come from its objective and num_class."""

    def __init__(self, booster: Any, objective: str, num_class: int) -> None:
        self.booster = booster
        kind = objective.split()[0] if objective else ""
        self.task: Task
        if kind in _BINARY:
            self.classes = [0, 1]
            self.task = "binary"
        elif kind in _MULTICLASS:
            self.classes = list(range(max(num_class, 2)))
            self.task = classifier_task(self.classes)
        else:
            # regression, regression_l1, huber, poisson, quantile, gamma, tweedie,
            # cross_entropy, lambdarank, custom ...: one number per row
            self.classes = None
            self.task = "regression"
        names = [str(n) for n in booster.feature_name()]
        # trained on an array: LightGBM invents Column_0..; the model then has no names
        auto = all(_AUTO_NAME.fullmatch(n) for n in names)
        self.feature_names = None if auto else names
        self.n_features = len(names)

    def predict(self, frame: pd.DataFrame) -> RawOutput:
        x: Any = (
            frame.to_numpy()
            if self.feature_names is None
            else select_features(frame, self.feature_names)
        )
        raw = np.asarray(self.booster.predict(x), dtype=np.float64)
        if self.task == "binary":
            p1 = raw.ravel()
            return RawOutput(probabilities=np.column_stack([1.0 - p1, p1]))
        if self.task == "multiclass":
            return RawOutput(probabilities=raw.reshape(len(frame), -1))
        return RawOutput(values=raw.ravel())


class LightGBMFlavor(Flavor):
    """LightGBM text model files (`Booster.save_model`), usually .txt or .lgb."""

    name = "lightgbm"
    extra = "lightgbm"
    packages = ("lightgbm", "numpy")

    def detect(self, path: Path) -> bool:
        if not path.is_file():
            return False
        head = read_head(path, 16)
        if head.startswith((b"tree\n", b"tree\r\n", b"version=v")):
            return True
        return path.suffix.lower() == ".lgb"

    def registration_options(self, path: Path, trust: Sequence[str] = ()) -> dict[str, Any]:
        """Read the new file once in a child process (LightGBM may crash on a damaged file)."""
        super().registration_options(path, trust)  # refuses --trust
        self.require("lightgbm")
        try:
            _check_model_text(path.read_bytes(), path.name)
        except OSError as exc:
            raise InvalidInputError(f"cannot read {path.name}: {exc}") from exc
        load_in_child(path, _PROBE, "a LightGBM model")
        return {}

    def load(self, path: Path, options: dict[str, Any]) -> LoadedModel:
        lightgbm = self.require("lightgbm")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidInputError(f"cannot read {path.name}: {exc}") from exc
        header = _check_model_text(data, path.name)
        try:
            booster = lightgbm.Booster(model_str=data.decode("utf-8"))
        except Exception as exc:
            raise InvalidInputError(f"cannot load {path.name} as a LightGBM model: {exc}") from exc
        try:
            num_class = int(header.get("num_class", "1"))
        except ValueError:
            num_class = 1
        return LightGBMModel(booster, header.get("objective", ""), num_class)

    def can_save(self, model: Any) -> bool:
        try:
            import lightgbm
        except ImportError:
            return False
        if isinstance(model, lightgbm.Booster):
            return True
        if not isinstance(model, lightgbm.LGBMClassifier | lightgbm.LGBMRegressor):
            return False
        if not getattr(model, "fitted_", False) or callable(getattr(model, "objective", None)):
            return False
        if isinstance(model, lightgbm.LGBMClassifier):
            # a native file only knows classes 0..k-1; other labels go to the sklearn flavor
            classes = np.asarray(model.classes_)
            return classes.dtype.kind in "iu" and classes.tolist() == list(range(len(classes)))
        return True

    def save(self, model: Any, directory: Path) -> Path:
        lightgbm = self.require("lightgbm")
        booster = model if isinstance(model, lightgbm.Booster) else model.booster_
        path = directory / "model.txt"
        booster.save_model(str(path))
        return path
