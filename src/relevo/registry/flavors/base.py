"""The one small interface every model flavor implements.

A flavor knows how to recognise its artifacts (`detect`), load one (`load`), save an in-memory
model as an artifact (`save`, for the Python API) and report the library versions it depends on.
A loaded model answers `predict(frame)` with a `RawOutput`: class probabilities (with the class
labels) for a classifier, values for a regressor. Everything after that (labels, JSON, logging)
is the same for every flavor and lives outside the flavors.
"""

from __future__ import annotations

import importlib
import os
import re
import signal
import subprocess
import sys
import textwrap
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from relevo.errors import InvalidInputError, MissingExtraError, Problem, UnavailableError

Task = Literal["binary", "multiclass", "regression"]
#: what the model is fed: a 2-D float64 array in signature order, or a DataFrame with names
InputFormat = Literal["array", "frame"]


@dataclass(frozen=True)
class RawOutput:
    """What a model returns for n rows.

    Classifiers: `probabilities` of shape (n, k), columns in the order of `classes`.
    Regressors: `values` of shape (n,).
    """

    probabilities: np.ndarray | None = None
    values: np.ndarray | None = None


class LoadedModel(ABC):
    """A model ready to predict, whatever library it came from."""

    #: "binary", "multiclass" or "regression"
    task: Task
    #: class labels in the order of the probability columns (classifiers only)
    classes: list[Any] | None = None
    #: the input columns the model itself declares, in order, when it declares them
    feature_names: list[str] | None = None
    #: how many inputs the model takes, when it says so without naming them
    n_features: int | None = None
    #: "array" when `predict_array` takes the float64 matrix natively, else "frame"
    input_format: InputFormat = "frame"
    #: the signature's column names in order (set by the registry after loading)
    input_names: list[str] | None = None

    @abstractmethod
    def predict(self, frame: pd.DataFrame) -> RawOutput:
        """Score the rows of `frame` (columns = features)."""

    def predict_array(self, x: np.ndarray) -> RawOutput:
        """Score a float64 matrix whose columns are the signature's, in order.

        The default wraps it in a DataFrame named after `input_names`; flavors that take
        arrays natively override it.
        """
        return self.predict(pd.DataFrame(x, columns=self.input_names, copy=False))

    def input_modes(self) -> list[str]:
        """The ways this model can be fed, fastest first; registration rehearses each."""
        return ["frame"]

    def set_input_mode(self, mode: str) -> None:
        """Feed the model the way `mode` (one of `input_modes()`) says from now on."""
        if mode not in self.input_modes():
            raise ValueError(f"unknown input mode {mode!r}")

    def compile(self, kind: str) -> Any:
        """A compiled form of this model (see `relevo.registry.compiled`), not yet in use."""
        raise InvalidInputError(
            f"only scikit-learn models can be compiled (--compile {kind}); "
            f"this model is a {type(self).__name__}"
        )

    def use_compiled(self, compiled: Any) -> None:
        """Score through `compiled` (what `compile` returned) from now on."""
        raise InvalidInputError(f"a {type(self).__name__} has no compiled form")

    def bind_inputs(self, names: list[str], numeric: bool) -> None:
        """Tell the model the signature's column names (and whether all are numbers)."""
        self.input_names = list(names)
        if self.input_format == "array" and not numeric:
            # only a numeric signature can be served as a float64 matrix
            self.set_input_mode(next(m for m in self.input_modes() if m != "array"))


class Flavor(ABC):
    """A family of model artifacts: sklearn, skops, xgboost, lightgbm, onnx, mlflow."""

    name: ClassVar[str]
    #: the pip extra that installs what this flavor needs (None: always installed)
    extra: ClassVar[str | None] = None
    #: the importable packages whose versions are recorded with each artifact
    packages: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def detect(self, path: Path) -> bool:
        """True when `path` looks like an artifact of this flavor (cheap: name and first bytes)."""

    @abstractmethod
    def load(self, path: Path, options: dict[str, Any]) -> LoadedModel:
        """Load the artifact at `path`; `options` are what `save`/registration recorded."""

    def can_save(self, model: Any) -> bool:
        """True when this flavor can save the in-memory `model` as an artifact."""
        return False

    def save(self, model: Any, directory: Path) -> Path:
        """Write `model` as an artifact inside `directory` and return its path."""
        raise NotImplementedError(f"the {self.name} flavor cannot save in-memory models")

    def registration_options(self, path: Path, trust: Sequence[str] = ()) -> dict[str, Any]:
        """Options to store with a new version and hand back to `load` (e.g. trusted types).

        Runs before anything is loaded: `trust` names the types the operator approves.
        """
        if trust:
            raise InvalidInputError(
                f"--trust (trust=[...]) applies to skops files only, not to {self.name} models"
            )
        return {}

    def library_versions(self) -> dict[str, str]:
        """Versions of the libraries this flavor uses, as installed now."""
        out: dict[str, str] = {}
        for pkg in self.packages:
            try:
                module = importlib.import_module(pkg)
            except ImportError:
                continue
            out[pkg] = str(getattr(module, "__version__", "unknown"))
        return out

    def require(self, module: str) -> ModuleType:
        """Import `module` or raise an error naming the extra that installs it."""
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            raise MissingExtraError(
                module.split(".")[0], self.extra or "all", f"The {self.name} flavor"
            ) from exc


def read_head(path: Path, n: int = 64) -> bytes:
    """The first `n` bytes of a file ('' for a directory or an unreadable file)."""
    if not path.is_file():
        return b""
    try:
        with path.open("rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def classifier_task(classes: list[Any]) -> Task:
    return "binary" if len(classes) == 2 else "multiclass"


def as_frame(frame: pd.DataFrame, feature_names: list[str] | None) -> pd.DataFrame:
    """Columns of `frame` in the model's own order when it declares one."""
    if feature_names is None or frame.columns.tolist() == feature_names:
        return frame  # already in order (the server builds frames that way): no copy
    return frame[feature_names]


def _normal_name(name: str) -> str:
    """A column name as model converters rewrite it: non-word characters become '_'.

    Covers LightGBM (spaces to '_') and skl2onnx (anything but letters, digits, '_' and '+',
    plus a leading '_' before a digit).
    """
    out = re.sub(r"[^\w+]", "_", name)
    return out[1:] if re.match(r"_\d", out) else out


def select_features(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """The columns of `frame` for the model's `names`, in order, renamed to those names.

    A name matches a column with exactly that name or, failing that, the one column whose name
    rewritten like converters do (spaces and punctuation to '_') equals it.
    """
    columns = [str(c) for c in frame.columns]
    exact = set(columns)
    by_normal: dict[str, list[str]] = {}
    for col in columns:
        by_normal.setdefault(_normal_name(col), []).append(col)
    chosen: list[str] = []
    problems: list[Problem] = []
    for name in names:
        if name in exact:
            chosen.append(name)
            continue
        candidates = by_normal.get(_normal_name(name), [])
        if len(candidates) == 1:
            chosen.append(candidates[0])
        elif candidates:
            problems.append(
                Problem(f"ambiguous: matches columns {', '.join(candidates)}", column=name)
            )
        else:
            problems.append(Problem("missing column", column=name))
    if problems:
        raise InvalidInputError("the input does not have the model's columns", problems)
    return frame[chosen].set_axis(list(names), axis=1)


_CHILD = """
import sys
try:
{body}
except Exception as exc:
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    sys.stderr.write(lines[0] + "\\n")
    sys.exit(1)
"""


def load_in_child(path: Path, body: str, what: str, timeout: float = 300.0) -> None:
    """Run `body` (the file is `sys.argv[1]`) in a child Python; raise if it fails or crashes.

    Native libraries (XGBoost, LightGBM) can crash the process on a damaged model file instead of
    raising; a child process takes the crash, and the file is refused with a clear error.
    """
    code = _CHILD.format(body=textwrap.indent(textwrap.dedent(body).strip(), "    "))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, str(path)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise InvalidInputError(
            f"reading {path.name} as {what} took more than {timeout:.0f} s; refusing it"
        ) from exc
    except OSError as exc:
        raise UnavailableError(f"cannot start a process to check {path.name}: {exc}") from exc
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        raise InvalidInputError(f"{path.name} is damaged: {what} crashed reading it ({name})")
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        detail = lines[-1] if lines else f"exit code {proc.returncode}"
        raise InvalidInputError(f"cannot load {path.name} as {what}: {detail}")
