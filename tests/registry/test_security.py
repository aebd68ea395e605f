"""Artifacts that try to run code or read outside their folder (issue 18 items 1 and 9), and the
pickles that need a class the loading process cannot import (issue 12 item 3)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sklearn.linear_model import LogisticRegression, Ridge

from relevo.datasets import CHURN_NUMERIC, CHURN_TARGET
from relevo.errors import InvalidInputError
from relevo.registry.flavors import get_flavor


def stored_files(home: Path) -> list[Path]:
    return sorted(p for p in (home / "artifacts").rglob("*") if p.is_file() or p.is_symlink())


def evil_skops(path: Path, command: str) -> Path:
    """A skops file whose tree calls `os.system(command)` when it is built."""
    sio = pytest.importorskip("skops.io")
    sio.dump((command,), path)
    with zipfile.ZipFile(path) as zf:
        args = json.loads(zf.read("schema.json"))
    header = {k: args.pop(k) for k in ("protocol", "_skops_version")}
    call = {
        **header,
        "__class__": "system",
        "__module__": "os",
        "__loader__": "ConstructorFromReduceNode",
        "content": args,
    }
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("schema.json", json.dumps(call))
    return path


# --------------------------------------------------------------------- issue 18.1: skops


def test_crafted_skops_file_is_refused_before_anything_runs(rv, relevo_home, tmp_path, churn_frame):
    marker = tmp_path / "PWNED"
    evil = evil_skops(tmp_path / "model.skops", f"touch {marker}")
    with pytest.raises(InvalidInputError) as info:
        rv.registry.register("evil", evil, churn_frame, target=CHURN_TARGET)
    text = str(info.value)
    assert "os.system" in text and "--trust os.system" in text and "trust=['os.system']" in text
    assert "nothing was loaded" in text
    assert not marker.exists()  # no code ran
    assert rv.registry.list() == []
    assert stored_files(relevo_home) == []


def test_skops_trust_is_exactly_what_the_operator_named(rv, tmp_path, churn_frame):
    sio = pytest.importorskip("skops.io")
    x, y = churn_frame[CHURN_NUMERIC].fillna(0), churn_frame[CHURN_TARGET]
    clf = LogisticRegression(max_iter=1000).fit(x, y)
    path = tmp_path / "model.skops"
    sio.dump(clf, path)
    needed = sorted(sio.get_untrusted_types(file=path))
    frame = x.assign(**{CHURN_TARGET: y})
    # skops' defaults cover a plain estimator: nothing to trust, nothing stored as trusted
    version = rv.registry.register("plain", path, frame, target=CHURN_TARGET)
    assert needed == [] and version.flavor_options["trusted_types"] == []
    with pytest.raises(InvalidInputError, match="skops files only"):
        rv.registry.register("plain", LogisticRegression().fit(x, y), frame, trust=["x.y"])


def test_skops_trusted_types_are_the_only_ones_used_at_load(rv, tmp_path, churn_frame):
    """A type the operator trusted is stored and allowed at load; nothing else is."""
    sio = pytest.importorskip("skops.io")
    x, y = churn_frame[CHURN_NUMERIC].fillna(0), churn_frame[CHURN_TARGET]
    reg = Ridge().fit(x, y)
    reg.note_ = Path("notes.txt")  # a type outside skops' defaults
    path = tmp_path / "model.skops"
    sio.dump(reg, path)
    needed = sorted(sio.get_untrusted_types(file=path))
    assert needed, "the test needs a type skops does not trust by default"
    frame = x.assign(**{CHURN_TARGET: y})
    with pytest.raises(InvalidInputError) as info:
        rv.registry.register("r", path, frame, target=CHURN_TARGET)
    for name in needed:
        assert f"--trust {name}" in str(info.value)
    version = rv.registry.register("r", path, frame, target=CHURN_TARGET, trust=needed)
    assert version.flavor_options["trusted_types"] == needed
    assert rv.registry.load(version.ref).model.estimator.note_ == Path("notes.txt")
    with pytest.raises(InvalidInputError, match="Untrusted types"):
        get_flavor("skops").load(rv.registry.artifacts.path(version.artifact_path), {})


# ------------------------------------------------------------ issue 18.9: MLflow symlinks


def test_mlflow_folder_with_a_symlink_outside_is_refused(rv, relevo_home, tmp_path, churn_frame):
    mlflow_sklearn = pytest.importorskip("mlflow.sklearn")
    x, y = churn_frame[CHURN_NUMERIC].fillna(0), churn_frame[CHURN_TARGET]
    folder = tmp_path / "mlflow_model"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow_sklearn.save_model(Ridge().fit(x, y), folder, pip_requirements=[])
    secret = tmp_path / "secret.txt"
    secret.write_text("database password\n")
    (folder / "extra").mkdir()
    (folder / "extra" / "notes.txt").symlink_to(secret)
    frame = x.assign(**{CHURN_TARGET: y})
    with pytest.raises(InvalidInputError) as info:
        rv.registry.register("linked", folder, frame, target=CHURN_TARGET)
    assert "extra/notes.txt" in str(info.value) and "symbolic link" in str(info.value)
    assert rv.registry.list() == []
    assert stored_files(relevo_home) == []
    # the same folder without the link registers
    (folder / "extra" / "notes.txt").unlink()
    assert rv.registry.register("linked", folder, frame, target=CHURN_TARGET).version == 1


# ------------------------------------------------- issue 12.3: pickles needing a class


SCRIPT_MAIN = """
import joblib
from sklearn.base import BaseEstimator, RegressorMixin

class MainWrapper(RegressorMixin, BaseEstimator):
    def fit(self, x, y):
        self.mean_ = float(sum(y) / len(y))
        return self
    def predict(self, x):
        return [self.mean_] * len(x)

joblib.dump(MainWrapper().fit([[1.0]], [2.0]), "model.joblib")
"""

MODULE = """
from sklearn.base import BaseEstimator, RegressorMixin

class ModuleWrapper(RegressorMixin, BaseEstimator):
    def fit(self, x, y):
        self.mean_ = float(sum(y) / len(y))
        return self
    def predict(self, x):
        return [self.mean_] * len(x)
"""

SCRIPT_MODULE = """
import joblib
from mywrap import ModuleWrapper
joblib.dump(ModuleWrapper().fit([[1.0]], [2.0]), "model.joblib")
"""


def saved_by_script(folder: Path, script: str, **modules: str) -> Path:
    """Run `script` as a user would (`python train.py` in its folder); return its model file."""
    folder.mkdir()
    for name, text in modules.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(text))
    (folder / "train.py").write_text(textwrap.dedent(script))
    subprocess.run([sys.executable, "train.py"], cwd=folder, check=True, capture_output=True)
    return folder / "model.joblib"


@pytest.mark.parametrize(
    ("script", "modules", "needles"),
    [
        (SCRIPT_MAIN, {}, ["'MainWrapper'", "__main__", "importable module", "PYTHONPATH"]),
        (
            SCRIPT_MODULE,
            {"mywrap": MODULE},
            ["ModuleWrapper", "'mywrap'", "install that module", "mywrap.py on PYTHONPATH"],
        ),
    ],
)
def test_pickle_needing_a_class_says_what_and_how(
    rv, tmp_path: Path, script: str, modules: dict[str, Any], needles: list[str]
):
    model = saved_by_script(tmp_path / "project", script, **modules)
    reference = tmp_path / "ref.csv"
    reference.write_text("x,y\n1.0,2.0\n")
    with pytest.raises(InvalidInputError) as info:
        rv.registry.register("wrapped", model, reference, target="y")
    for needle in needles:
        assert needle in str(info.value)
    assert "Traceback" not in str(info.value)
