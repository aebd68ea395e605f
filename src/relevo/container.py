"""`relevo containerize`: a Docker build context that bakes one model version into an image.

The context builds FROM the relevo server image (the repository's `Dockerfile`), copies the
version's bundle in (artifact, registry record, reference profile: `relevo.registry.bundle`)
and imports it at build time, so the image's own store (SQLite under `RELEVO_HOME`) has that
version registered and deployed when the container starts. In the spirit of
`bentoml containerize` and `mlflow models build-docker`: one image per model version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from relevo import __version__
from relevo.errors import InvalidInputError
from relevo.registry.bundle import export_bundle
from relevo.registry.flavors import get_flavor
from relevo.registry.registry import NAME_RE, Registry

#: where the bundle lives inside the image (outside RELEVO_HOME, so a volume there hides nothing)
BUNDLE_DIR = "/opt/relevo/bundle"
_TAG_RE = re.compile(r"[^a-z0-9_.-]+")
#: an image reference as Docker writes it (registry/repository:tag@digest); nothing else may
#: reach the Dockerfile or the printed command
_IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$")


@dataclass(frozen=True)
class BuildContext:
    """A written build context and how to build it."""

    path: Path
    model: str
    deployment: str
    image: str
    base_image: str
    extras: tuple[str, ...]
    files: tuple[str, ...] = field(default_factory=tuple)

    @property
    def build_command(self) -> str:
        return (
            f"docker build --build-arg RELEVO_IMAGE={self.base_image} -t {self.image} {self.path}"
        )

    @property
    def base_build_command(self) -> str:
        """The command that builds the base image, run in a checkout of relevo."""
        return (
            f"docker build --build-arg RELEVO_EXTRAS={','.join(self.extras)} -t {self.base_image} ."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "context": str(self.path),
            "model": self.model,
            "deployment": self.deployment,
            "image": self.image,
            "base_image": self.base_image,
            "extras": list(self.extras),
            "files": list(self.files),
            "build": self.build_command,
            "base_build": self.base_build_command,
        }


def containerize(
    registry: Registry,
    ref: str,
    output: Path,
    *,
    deployment: str | None = None,
    extras: list[str] | None = None,
    base_image: str | None = None,
    image: str | None = None,
) -> BuildContext:
    """Write the build context of version `ref` into `output` (new or empty)."""
    version = registry.get(ref)
    needed = [get_flavor(version.flavor).extra]
    if version.flavor_options.get("compiled") == "onnx":
        needed.append("onnx")  # the compiled form is rebuilt where the image serves it
    chosen = _extras(extras, tuple(e for e in needed if e))
    name = deployment or version.name
    if not NAME_RE.fullmatch(name):
        raise InvalidInputError(f"invalid deployment name {name!r}")
    base = base_image or f"relevo:{__version__}"
    tag = image or f"{_TAG_RE.sub('-', version.name.lower())}:{version.version}"
    for option, value in (("--base-image", base), ("--image", tag)):
        if not _IMAGE_RE.fullmatch(value):
            raise InvalidInputError(f"{option}: {value!r} is not an image reference")
    output = output.resolve()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise InvalidInputError(f"{output} is not empty: write the context to a new folder")
    export_bundle(registry, version.ref, output / "bundle")
    (output / "Dockerfile").write_text(_dockerfile(version.ref, name, base))
    (output / ".dockerignore").write_text("*\n!bundle/\n")
    files = sorted(p.relative_to(output).as_posix() for p in output.rglob("*") if p.is_file())
    return BuildContext(output, version.ref, name, tag, base, chosen, tuple(files))


def known_extras() -> tuple[str, ...]:
    """The extras this relevo release declares (what the base image's build may ask for)."""
    try:
        declared = metadata.metadata("relevo").get_all("Provides-Extra") or []
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        declared = []
    return tuple(sorted(set(declared) - {"dev"})) or (
        "all",
        "lightgbm",
        "mlflow",
        "onnx",
        "postgres",
        "skops",
        "xgboost",
    )


def _extras(asked: list[str] | None, needed: tuple[str, ...]) -> tuple[str, ...]:
    """The extras the base image needs: those asked for, else PostgreSQL's driver and what the
    model needs (its flavor's, and onnx for a compiled form)."""
    if asked:
        chosen = [e.strip() for item in asked for e in item.split(",") if e.strip()]
    else:
        chosen = ["postgres", *needed]
    known = known_extras()
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise InvalidInputError(
            f"unknown extra {', '.join(unknown)}: choose among {', '.join(known)}"
        )
    missing = [e for e in needed if e not in chosen and "all" not in chosen]
    if missing:
        raise InvalidInputError(f"the model needs the {missing[0]!r} extra: add it to --extras")
    return tuple(dict.fromkeys(chosen))


def _dockerfile(model: str, deployment: str, base: str) -> str:
    return f"""\
# syntax=docker/dockerfile:1
# {model} baked into the relevo server image, served as deployment {deployment!r}.
# Written by `relevo containerize` (relevo {__version__}); build with:
#   docker build --build-arg RELEVO_IMAGE={base} -t IMAGE .
ARG RELEVO_IMAGE={base}
FROM ${{RELEVO_IMAGE}}
LABEL org.opencontainers.image.title="{deployment}" \\
      io.relevo.model="{model}" \\
      io.relevo.deployment="{deployment}"
COPY --chown=relevo:relevo bundle {BUNDLE_DIR}
# registers {model} in the image's own store (RELEVO_HOME) and deploys it: the artifact's sha256
# is checked and the model loaded once, so a missing library fails the build, not a request
RUN relevo models import {BUNDLE_DIR} --deploy {deployment}
"""
