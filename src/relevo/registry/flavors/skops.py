"""skops files: scikit-learn models stored without pickle, loaded with an allow-list.

A skops file describes the objects to build; skops builds only types it trusts by default
(scikit-learn estimators, NumPy and builtin containers). Any other type named in the file (a
custom class, or a callable such as `os.system`) could run code when built, so relevo never
trusts one on its own: registration lists the file's types outside skops' defaults *before*
loading anything, and refuses the file unless the operator names every one of them
(`--trust TYPE`, Python `trust=[...]`). Only those operator-approved names are stored with the
version, and later loads pass exactly them to skops.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relevo.errors import InvalidInputError, Problem
from relevo.registry.flavors.base import Flavor, LoadedModel
from relevo.registry.flavors.sklearn import EstimatorModel, mode_option


class SkopsFlavor(Flavor):
    """skops files of scikit-learn compatible estimators."""

    name = "skops"
    extra = "skops"
    packages = ("sklearn", "skops", "numpy")

    def detect(self, path: Path) -> bool:
        return path.suffix.lower() == ".skops"

    def registration_options(self, path: Path, trust: Sequence[str] = ()) -> dict[str, Any]:
        sio = self.require("skops.io")
        try:
            # reads the file's schema only: nothing is built, no code runs
            untrusted = sorted({str(t) for t in sio.get_untrusted_types(file=path)})
        except Exception as exc:
            raise InvalidInputError(f"cannot read {path.name} as a skops file: {exc}") from exc
        approved = sorted({str(t).strip() for t in trust if str(t).strip()})
        refused = [t for t in untrusted if t not in approved]
        if refused:
            flags = " ".join(f"--trust {t}" for t in refused)
            raise InvalidInputError(
                f"{path.name} needs {len(refused)} type(s) that skops does not trust by default: "
                f"{', '.join(refused)}; building them can run code, so nothing was loaded. "
                f"If you know and trust them, register again with {flags} "
                f"(Python: trust={refused!r})",
                [Problem("untrusted type", column=t) for t in refused],
            )
        return {"trusted_types": approved}

    def load(self, path: Path, options: dict[str, Any]) -> LoadedModel:
        sio = self.require("skops.io")
        trusted = [str(t) for t in options.get("trusted_types", [])]
        try:
            estimator = sio.load(path, trusted=trusted)
        except Exception as exc:
            raise InvalidInputError(f"cannot load {path.name} as a skops file: {exc}") from exc
        return EstimatorModel(estimator, mode_option(options))

    def can_save(self, model: Any) -> bool:
        return hasattr(model, "predict") and hasattr(model, "fit")

    def save(self, model: Any, directory: Path) -> Path:
        sio = self.require("skops.io")
        path = directory / "model.skops"
        sio.dump(model, path)
        return path
