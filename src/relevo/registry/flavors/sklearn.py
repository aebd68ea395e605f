"""scikit-learn estimators and pipelines saved with joblib (pickle).

joblib/pickle files run arbitrary code when loaded: register only files you trust. (skops files,
which do not, live in `skops.py`.)

How an estimator is fed is decided once per version by registration's rehearsal (see
`relevo.registry.inputs`) and recorded in the version's `flavor_options`:
- "array": a float64 matrix in signature order, straight to the estimator. An estimator fitted on
  a DataFrame has its `feature_names_in_` removed (in this loaded copy only) so that scikit-learn
  does not warn "X does not have valid feature names" on every call; the rehearsal proved its
  outputs identical to the DataFrame's first.
- "values": the frame's values (any dtype) in signature order, for estimators fitted on an array
  whose inputs are not all numbers (what relevo always did for such estimators).
- "frame": a DataFrame with the signature's names (estimators that select columns by name).
"""

from __future__ import annotations

import pickletools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from relevo.errors import InvalidInputError
from relevo.registry.flavors.base import (
    Flavor,
    InputFormat,
    LoadedModel,
    RawOutput,
    as_frame,
    classifier_task,
    read_head,
)

if TYPE_CHECKING:
    from relevo.registry.compiled import CompiledModel

PICKLE_SUFFIXES = {".joblib", ".pkl", ".pickle", ".jbl"}
_MODES: dict[str, InputFormat] = {"array": "array", "values": "frame", "frame": "frame"}


def _strip_feature_names(root: Any) -> list[tuple[Any, Any]]:
    """Remove `feature_names_in_` from every fitted estimator inside `root`; return what to
    put back. Pipelines, ColumnTransformers and meta-estimators keep their parts in attributes,
    lists, tuples and dicts, so those are walked."""
    from sklearn.base import BaseEstimator

    removed: list[tuple[Any, Any]] = []
    seen: set[int] = set()
    stack: list[Any] = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, BaseEstimator):
            names = obj.__dict__.pop("feature_names_in_", None)
            if names is not None:
                removed.append((obj, names))
            stack.extend(obj.__dict__.values())
        elif isinstance(obj, list | tuple):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
    return removed


class EstimatorModel(LoadedModel):
    """Any object with scikit-learn's `predict` / `predict_proba` conventions."""

    def __init__(self, estimator: Any, mode: str | None = None) -> None:
        if not hasattr(estimator, "predict"):
            raise InvalidInputError(
                f"the artifact holds a {type(estimator).__name__}, which has no predict method"
            )
        self.estimator = estimator
        names = getattr(estimator, "feature_names_in_", None)
        self._named = names is not None
        self.feature_names = [str(c) for c in names] if names is not None else None
        n_in = getattr(estimator, "n_features_in_", None)
        self.n_features = int(n_in) if isinstance(n_in, int | np.integer) else None
        classes = getattr(estimator, "classes_", None)
        if classes is not None and not hasattr(estimator, "predict_proba"):
            # served as a regressor, its labels became "values" (and text labels failed as
            # numbers, blamed on the reference)
            raise InvalidInputError(
                f"the artifact holds a {type(estimator).__name__}, a classifier without "
                "predict_proba: relevo serves a classifier's class probabilities. Wrap it in "
                "sklearn.calibration.CalibratedClassifierCV, or use a model that gives them "
                "(for example SVC(probability=True))"
            )
        if classes is not None:
            self.classes = [c.item() if isinstance(c, np.generic) else c for c in classes]
            self.task = classifier_task(self.classes)
        else:
            self.classes = None
            self.task = "regression"
        self._stripped: list[tuple[Any, Any]] = []
        self.mode = ""
        #: the compiled form scoring float64 matrices, when the version has one in use
        self.compiled: CompiledModel | None = None
        # versions registered before the rehearsal existed: what relevo did then
        self.set_input_mode(mode or ("frame" if self._named else "array"))

    def input_modes(self) -> list[str]:
        return ["array", "frame"] if self._named else ["array", "values", "frame"]

    def set_input_mode(self, mode: str) -> None:
        super().set_input_mode(mode)
        for obj, names in self._stripped:
            obj.feature_names_in_ = names
        self._stripped = _strip_feature_names(self.estimator) if mode == "array" else []
        self.mode = mode
        self.input_format = _MODES[mode]

    def _names(self) -> list[str] | None:
        return self.feature_names or self.input_names

    def compile(self, kind: str) -> CompiledModel:
        from relevo.registry.compiled import KINDS, compile_onnx

        if kind not in KINDS:
            raise InvalidInputError(
                f"unknown compiled form {kind!r}: relevo compiles to {', '.join(KINDS)}"
            )
        if self.mode != "array":
            raise InvalidInputError(
                f"--compile {kind} needs a model fed a float64 array (every input a number); "
                f"this one is fed {'a DataFrame' if self.mode == 'frame' else 'mixed values'}"
            )
        width = len(self.input_names) if self.input_names is not None else self.n_features
        if width is None:
            raise InvalidInputError("the model's input columns are unknown: cannot compile it")
        return compile_onnx(self.estimator, width, self.classes is not None)

    def use_compiled(self, compiled: CompiledModel) -> None:
        self.compiled = compiled

    def predict(self, frame: pd.DataFrame) -> RawOutput:
        names = self._names()
        x: Any = frame if names is None else as_frame(frame, names)
        if self.mode == "array":
            matrix = x.to_numpy(dtype=np.float64, na_value=np.nan)
            return self.compiled.run(matrix) if self.compiled is not None else self._score(matrix)
        return self._score(x.to_numpy() if self.mode == "values" else x)

    def predict_array(self, x: np.ndarray) -> RawOutput:
        if self.mode != "array":
            return super().predict_array(x)
        if self.compiled is not None:
            return self.compiled.run(x)
        # column-major, as a DataFrame's values are: the same floating-point sums in the same
        # order, so the answers are bit-for-bit the DataFrame's (a C-ordered matrix can differ
        # in the last bit); a copy of a few microseconds for a batch
        return self._score(np.asfortranarray(x))

    def _score(self, x: Any) -> RawOutput:
        if self.classes is not None:
            return RawOutput(probabilities=np.asarray(self.estimator.predict_proba(x)))
        return RawOutput(values=np.asarray(self.estimator.predict(x), dtype=np.float64).ravel())


def mode_option(options: dict[str, Any]) -> str | None:
    """The input mode recorded with a version (None for versions older than the rehearsal)."""
    mode = options.get("input_mode")
    return str(mode) if mode in _MODES else None


def _pickle_globals(path: Path, module: str) -> list[str]:
    """Names the pickle at `path` imports from `module`, read without unpickling anything.

    Best effort: a compressed joblib file, or one with raw array bytes, stops the scan early.
    """
    found: list[str] = []
    strings: list[str] = []
    try:
        with path.open("rb") as fh:
            for op, arg, _pos in pickletools.genops(fh):
                if op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                    mod, _, name = arg.partition(" ")
                    if mod == module:
                        found.append(name)
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2 and strings[-2] == module:
                    found.append(strings[-1])
                elif isinstance(arg, str):
                    strings.append(arg)
    except Exception:
        pass  # the scan only adds detail to an error message
    return sorted(set(found))


_NO_ATTRIBUTE = re.compile(r"Can't get attribute '([^']+)' on <module '([^']+)'")

_HOW = (
    "define it in an importable module (a .py file, not the script you ran), import it from "
    "there when you fit and save the model, then install that module or put its folder on "
    "PYTHONPATH before registering and serving"
)


def pickle_error(path: Path, exc: Exception) -> InvalidInputError:
    """An error that says which class or module the pickle needs and what to do about it."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        names = _pickle_globals(path, exc.name)
        what = f"{', '.join(names)} from " if names else ""
        return InvalidInputError(
            f"cannot load {path.name}: it needs {what}the module {exc.name!r}, which cannot be "
            f"imported here; install that module, or put the folder that holds "
            f"{exc.name.split('.')[0]}.py on PYTHONPATH"
        )
    match = _NO_ATTRIBUTE.search(str(exc)) if isinstance(exc, AttributeError) else None
    if match:
        name, module = match.groups()
        where = (
            "the script that saved it (its __main__)"
            if module == "__main__"
            else f"the module {module!r}, which has no such name here"
        )
        return InvalidInputError(
            f"cannot load {path.name}: it needs the class {name!r} from {where}; {_HOW}"
        )
    return InvalidInputError(
        f"cannot load {path.name}: not a valid joblib/pickle file ({type(exc).__name__}: {exc})"
    )


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
        except Exception as exc:
            raise pickle_error(path, exc) from exc
        return EstimatorModel(estimator, mode_option(options))

    def can_save(self, model: Any) -> bool:
        return hasattr(model, "predict") and hasattr(model, "fit")

    def save(self, model: Any, directory: Path) -> Path:
        import joblib

        path = directory / "model.joblib"
        joblib.dump(model, path)
        return path
