"""The model registry: immutable, versioned, content-addressed models with their signatures
and reference profiles."""

from __future__ import annotations

import logging
import pickle
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from relevo.errors import InvalidInputError, NotFoundError, Problem
from relevo.monitoring.reference import ReferenceProfile
from relevo.names import NAME_RE
from relevo.registry.artifacts import ArtifactStore
from relevo.registry.compiled import TOLERANCE as COMPILE_TOLERANCE
from relevo.registry.compiled import CompiledFormWarning, max_difference, versions
from relevo.registry.flavors import (
    Flavor,
    LoadedModel,
    RawOutput,
    detect_flavor,
    flavor_for_object,
    get_flavor,
)
from relevo.registry.holdout import warn_if_training_data
from relevo.registry.inputs import (
    StrayTextWarning,
    as_matrix,
    is_numeric,
    rehearse,
    resolve_features,
    stray_text,
)
from relevo.registry.signature import Signature
from relevo.registry.types import ModelRef, ModelVersion
from relevo.store import Store
from relevo.tables import read_table

log = logging.getLogger(__name__)


class LibraryVersionWarning(UserWarning):
    """A model is loaded with other library versions than it was saved with."""


@dataclass(frozen=True)
class LoadedVersion:
    """A registered version with its model loaded and ready to predict."""

    version: ModelVersion
    model: LoadedModel


class Registry:
    """Register, find and load model versions."""

    def __init__(self, store: Store, artifacts: ArtifactStore) -> None:
        self.store = store
        self.artifacts = artifacts

    def register(
        self,
        name: str,
        model: Any,
        reference: pd.DataFrame | str | Path,
        *,
        target: str | None = None,
        flavor: str | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        lineage: Mapping[str, Any] | None = None,
        features: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        trust: Sequence[str] | None = None,
        training: pd.DataFrame | str | Path | None = None,
        compile: str | None = None,
    ) -> ModelVersion:
        """Register `model` (a path to an artifact or a fitted in-memory model) as the next
        version of `name`, with its signature and profile taken from `reference`.

        `features` names the model's inputs in the order it expects them (needed for a model
        without feature names whose inputs are not exactly the reference's other columns);
        `exclude` drops reference columns that are not inputs (ids, timestamps); `trust` names
        the types a skops file may build beyond skops' defaults. `training`: the data the
        model was fitted on, if at hand: a `ReferenceIsTrainingDataWarning` is issued when the
        reference is mostly those rows (a held-out split makes the better reference).
        `compile="onnx"`: serve a compiled form of a scikit-learn model with numeric inputs,
        kept only when it answers like the model on every reference row (see
        `relevo.registry.compiled`).
        """
        if not NAME_RE.fullmatch(name):  # match() lets "$" accept a trailing newline
            raise InvalidInputError(
                f"invalid model name {name!r}: use letters, digits, '.', '_' or '-' "
                "(up to 200 characters, starting with a letter or digit)"
            )
        frame = _reference_frame(reference)
        if target is not None and target not in frame.columns:
            raise InvalidInputError(
                f"target column {target!r} is not in the reference data",
                [Problem("no such column", column=target)],
            )
        with tempfile.TemporaryDirectory(prefix="relevo-register-") as tmp:
            chosen, path = self._artifact(model, flavor, Path(tmp))
            # before anything is loaded: skops refuses types the operator did not trust
            options = chosen.registration_options(path, tuple(trust or ()))
            loaded = chosen.load(path, options)
            columns, source = resolve_features(loaded, frame, target, features, exclude)
            signature = Signature.infer(frame, columns)
            if training is not None:
                train = frame if training is reference else _reference_frame(training)
                warn_if_training_data(frame, train, columns)
            inputs = frame[columns]
            numeric = is_numeric(signature)
            loaded.bind_inputs(columns, numeric)
            stray = stray_text(inputs)
            try:
                raw, mode = rehearse(loaded, inputs, numeric)
            except InvalidInputError:
                if stray:  # the likely cause, named as `relevo predict` names it
                    raise _stray_error(stray) from None
                raise
            if stray:
                _warn_stray(stray)
            compiled = _compiled_options(loaded, inputs, raw, compile) if compile else {}
            profile = ReferenceProfile.build(inputs, signature, loaded.task, loaded.classes, raw)
            sha, rel, size = self.artifacts.put(path)
        options = {
            **options,
            "input": loaded.input_format,
            "input_mode": mode,
            "input_order": source,
            **compiled,
        }
        fields = {
            "name": name,
            "flavor": chosen.name,
            "task": loaded.task,
            "classes": loaded.classes,
            "artifact_sha256": sha,
            "artifact_path": rel,
            "artifact_size": size,
            "signature": signature.to_dict(),
            "target": target,
            "description": description,
            "tags": dict(tags or {}),
            "metrics": {k: float(v) for k, v in (metrics or {}).items()},
            "lineage": dict(lineage or {}),
            "library_versions": chosen.library_versions(),
            "flavor_options": options,
        }
        return self.store.models.add(fields, orjson.dumps(profile.to_dict()).decode())

    def get(self, ref: str | ModelRef) -> ModelVersion:
        """The version `NAME:VERSION` (or the latest of `NAME`)."""
        parsed = ModelRef.parse(ref) if isinstance(ref, str) else ref
        found = self.store.models.get(parsed.name, parsed.version)
        if found is None:
            known = sorted({v.name for v in self.store.models.list()})
            hint = (
                f"; registered models: {', '.join(known)}" if known else "; no model is registered"
            )
            raise NotFoundError(f"model {parsed} not found{hint}")
        return found

    def list(self, name: str | None = None) -> list[ModelVersion]:
        return self.store.models.list(name)

    def reference_profile(self, ref: str | ModelRef | ModelVersion) -> ReferenceProfile:
        version = ref if isinstance(ref, ModelVersion) else self.get(ref)
        payload = self.store.models.profile(version.name, version.version)
        if payload is None:
            raise NotFoundError(f"model {version.ref} has no reference profile")
        return ReferenceProfile.from_dict(orjson.loads(payload))

    def load(self, ref: str | ModelRef | ModelVersion) -> LoadedVersion:
        """Load a version's model after verifying its artifact's sha256."""
        version = ref if isinstance(ref, ModelVersion) else self.get(ref)
        path = self.artifacts.verified_path(version.artifact_path, version.artifact_sha256)
        flavor = get_flavor(version.flavor)
        now = flavor.library_versions()
        differ = {
            pkg: (saved, now.get(pkg, "missing"))
            for pkg, saved in version.library_versions.items()
            if now.get(pkg) != saved
        }
        if differ:
            shown = ", ".join(f"{p} {a} -> {b}" for p, (a, b) in differ.items())
            warnings.warn(
                f"{version.ref} was saved with other library versions than installed now "
                f"({shown}); its predictions may differ",
                LibraryVersionWarning,
                stacklevel=2,
            )
        model = flavor.load(path, version.flavor_options)
        model.bind_inputs(version.signature.names, is_numeric(version.signature))
        kind = version.flavor_options.get("compiled")
        if kind:
            try:
                _same_compiler(version.flavor_options.get("compiled_with"))
                model.use_compiled(model.compile(str(kind)))
            except Exception as exc:  # served as registered before compiling: still correct
                warnings.warn(
                    f"{version.ref} is served by {version.flavor}, not its compiled form "
                    f"({kind}): {exc}",
                    CompiledFormWarning,
                    stacklevel=2,
                )
        return LoadedVersion(version, model)

    def _artifact(self, model: Any, flavor: str | None, tmp: Path) -> tuple[Flavor, Path]:
        if isinstance(model, (str, Path)):
            path = Path(model)
            if not path.exists():
                raise InvalidInputError(f"artifact not found: {path}")
            return (get_flavor(flavor) if flavor else detect_flavor(path)), path
        chosen = get_flavor(flavor) if flavor else flavor_for_object(model)
        if not chosen.can_save(model):
            raise InvalidInputError(
                f"the {chosen.name} flavor cannot save a {type(model).__name__}"
            )
        try:
            return chosen, chosen.save(model, tmp)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            text = str(exc)
            advice = (
                "a lambda or a function defined inside another cannot be pickled: define it "
                "at the top level of a module the server can import (and install that module "
                "there)"
                if "lambda" in text or "<locals>" in text
                else "it holds something pickle cannot save (a lock, an open file or "
                "connection, a generator): leave that out of the fitted model"
            )
            raise InvalidInputError(
                f"the model cannot be saved ({type(exc).__name__}: {text[:300]}): {advice}"
            ) from None


def _same_compiler(recorded: Any) -> None:
    """Refuse to rebuild a compiled form with other libraries than the ones whose form was
    checked against the model at registration (an image built later, an upgrade): its answers
    were never compared with the model's. Raises InvalidInputError naming what changed."""
    if not isinstance(recorded, dict):
        return  # registered before the versions were recorded: as before
    now = versions()
    changed = {k: (v, now.get(k, "missing")) for k, v in recorded.items() if now.get(k) != v}
    if changed:
        shown = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in sorted(changed.items()))
        raise InvalidInputError(
            f"it was checked against the model with other libraries than installed now "
            f"({shown}); register the model again with --compile to check it with these"
        )


def _compiled_options(
    loaded: LoadedModel, inputs: pd.DataFrame, truth: RawOutput, kind: str
) -> dict[str, Any]:
    """Compile the model, check it on every reference row against the model's own answers
    (`truth`), and return what the version records of it; refuse when it differs."""
    compiled = loaded.compile(kind)
    worst = max_difference(compiled.run(as_matrix(inputs)), truth)
    if not worst <= COMPILE_TOLERANCE:
        raise InvalidInputError(
            f"the compiled ({kind}) form answers up to {worst:.3g} away from the model on the "
            f"reference data (the tolerance is {COMPILE_TOLERANCE:g}): register it without "
            "--compile"
        )
    return {"compiled": kind, "compiled_max_difference": worst, "compiled_with": versions()}


def _stray_error(problems: list[Problem]) -> InvalidInputError:
    columns = ", ".join(dict.fromkeys(repr(p.column) for p in problems))
    return InvalidInputError(
        f"the reference data has text in column(s) of numbers ({columns}) and the model cannot "
        "take them as text; nothing was registered. Fix or empty those cells",
        problems,
    )


def _warn_stray(problems: list[Problem]) -> None:
    for column in dict.fromkeys(p.column for p in problems):
        cells = "; ".join(str(p) for p in problems if p.column == column)
        warnings.warn(
            f"column {column!r} of the reference data is registered as text, not numbers, "
            f"because of {cells}; if it holds numbers, fix those cells and register again",
            StrayTextWarning,
            stacklevel=3,
        )


def _reference_frame(reference: pd.DataFrame | str | Path) -> pd.DataFrame:
    if not isinstance(reference, pd.DataFrame | str | Path):
        raise InvalidInputError(
            f"the reference must be a DataFrame or the path of a CSV or Parquet file, not a "
            f"{type(reference).__name__}" + (" (a Series: pass it as .to_frame())"
                                              if isinstance(reference, pd.Series) else "")
        )  # fmt: skip
    frame = reference if isinstance(reference, pd.DataFrame) else read_table(reference, "reference")
    if frame.empty or len(frame.columns) == 0:
        raise InvalidInputError("the reference data is empty: it needs at least one row")
    if not all(isinstance(c, str) for c in frame.columns):
        frame = frame.rename(columns=str)
    return frame
