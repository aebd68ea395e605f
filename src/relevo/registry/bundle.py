"""A model version as a folder that travels: its artifact, its registry record and its reference
profile, exported from one registry and imported into another with the same NAME:VERSION.

`relevo containerize` bakes such a bundle into an image; `relevo models export` and
`relevo models import` move a version between stores (a laptop's SQLite and production's
PostgreSQL). The artifact's sha256 is checked on import, as on every load.

Layout::

    BUNDLE/relevo-model.json     format, the version's record (ModelVersion.to_dict) and profile
    BUNDLE/artifact/<file or folder>
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from relevo.errors import ConflictError, IntegrityError, InvalidInputError
from relevo.registry.artifacts import refuse_symlinks, tree_sha256
from relevo.registry.registry import Registry
from relevo.registry.signature import Signature
from relevo.registry.types import ModelRef, ModelVersion

MANIFEST = "relevo-model.json"
FORMAT = 1


def export_bundle(registry: Registry, ref: str | ModelRef, folder: Path) -> ModelVersion:
    """Write version `ref` (artifact verified first) into `folder`, which must be empty or new."""
    version = registry.get(ref)
    source = registry.artifacts.verified_path(version.artifact_path, version.artifact_sha256)
    profile = registry.store.models.profile(version.name, version.version)
    refuse_unless_new_folder(folder, "export into a new or empty folder")
    target = folder / "artifact" / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)
    manifest = {
        "format": FORMAT,
        "model": version.to_dict(),
        "profile": orjson.loads(profile) if profile is not None else None,
    }
    (folder / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return version


def refuse_unless_new_folder(folder: Path, advice: str) -> None:
    """Raise InvalidInputError unless `folder` is an empty folder or can be made one."""
    nearest = next(path for path in (folder, *folder.parents) if path.exists())
    if not nearest.is_dir():  # `folder` itself, or a file where a parent folder would be
        raise InvalidInputError(f"{nearest} is a file, not a folder: {advice}")
    if nearest == folder and any(folder.iterdir()):
        raise InvalidInputError(f"{folder} is not empty: {advice}")


def read_manifest(folder: Path) -> dict[str, Any]:
    """The bundle's record, checked for the fields an import needs."""
    path = folder / MANIFEST
    if not path.is_file():
        raise InvalidInputError(f"{folder} is not a model bundle: {MANIFEST} is missing")
    try:
        manifest = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidInputError(f"{path}: unknown bundle format (expected format {FORMAT})")
    model = manifest.get("model")
    needed = ("name", "version", "flavor", "task", "artifact", "signature")
    missing = [k for k in needed if not isinstance(model, dict) or k not in model]
    if missing:
        raise InvalidInputError(f"{path}: the model record lacks {', '.join(missing)}")
    if not isinstance(manifest.get("profile"), dict):
        raise InvalidInputError(f"{path}: the reference profile is missing")
    return manifest


def import_bundle(registry: Registry, folder: Path) -> tuple[ModelVersion, bool]:
    """Register the bundle's version under its own NAME:VERSION; (version, True when added).

    Importing the same bundle twice is a no-op; a different artifact under a NAME:VERSION that
    exists is a conflict. The model is loaded once before anything is written, so a missing
    library fails here (naming the extra to install), not at the first request.
    """
    manifest = read_manifest(folder)
    model = manifest["model"]
    recorded = model["artifact"]
    source = folder / "artifact" / Path(recorded["path"]).name
    if not source.exists():
        raise InvalidInputError(f"the bundle's artifact is missing: {source}")
    refuse_symlinks(source)
    if tree_sha256(source) != recorded["sha256"]:
        raise IntegrityError(
            f"{source} does not match the sha256 recorded in {MANIFEST}: refusing to import it"
        )
    existing = registry.store.models.get(model["name"], int(model["version"]))
    if existing is not None:
        _same(existing, recorded["sha256"])
    # stored even when the version is known: a new replica on a shared database gets its copy
    sha, rel, size = registry.artifacts.put(source)
    if existing is not None:
        return existing, False
    version = ModelVersion(
        name=model["name"],
        version=int(model["version"]),
        flavor=model["flavor"],
        task=model["task"],
        classes=model.get("classes"),
        artifact_sha256=sha,
        artifact_path=rel,
        artifact_size=size,
        signature=Signature.from_dict(model["signature"]),
        target=model.get("target"),
        created_at=datetime.fromisoformat(model["created_at"]),
        description=model.get("description", ""),
        tags=dict(model.get("tags") or {}),
        metrics=dict(model.get("metrics") or {}),
        lineage=dict(model.get("lineage") or {}),
        library_versions=dict(model.get("library_versions") or {}),
        flavor_options=dict(model.get("flavor_options") or {}),
    )
    registry.load(version)  # raises with the extra to install when a library is missing
    fields = {
        "name": version.name,
        "version": version.version,
        "flavor": version.flavor,
        "task": version.task,
        "classes": version.classes,
        "artifact_sha256": sha,
        "artifact_path": rel,
        "artifact_size": size,
        "signature": version.signature.to_dict(),
        "target": version.target,
        "created_at": version.created_at,
        "description": version.description,
        "tags": version.tags,
        "metrics": version.metrics,
        "lineage": version.lineage,
        "library_versions": version.library_versions,
        "flavor_options": version.flavor_options,
    }
    profile = orjson.dumps(manifest["profile"]).decode()
    if not registry.store.models.insert(fields, profile):  # another importer was first
        found = registry.store.models.get(version.name, version.version)
        assert found is not None
        return _same(found, sha), False
    return registry.get(ModelRef(version.name, version.version)), True


def _same(existing: ModelVersion, sha256: str) -> ModelVersion:
    if existing.artifact_sha256 != sha256:
        raise ConflictError(
            f"{existing.ref} is already registered with another artifact "
            f"(sha256 {existing.artifact_sha256[:12]}…, the bundle's is {sha256[:12]}…)"
        )
    return existing
