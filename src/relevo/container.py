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
from relevo.registry.bundle import export_bundle, refuse_unless_new_folder
from relevo.registry.flavors import get_flavor
from relevo.registry.registry import NAME_RE, Registry

#: where the bundle lives inside the image (outside RELEVO_HOME, so a volume there hides nothing)
BUNDLE_DIR = "/opt/relevo/bundle"

# Docker's image reference grammar (github.com/distribution/reference), the only text that may
# reach the Dockerfile or the printed command: [HOST[:PORT]/]PATH[:TAG][@DIGEST]
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_COMPONENT_RE = re.compile(_COMPONENT)
_SEPARATOR_RE = re.compile(r"[._]|__|-+")
_HOST_RE = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]+)?"
)
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_NOT_IN_TAG_RE = re.compile(r"[^\w.-]", re.ASCII)
_DIGEST_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
#: Docker's limit on a repository name, host included
_NAME_MAX = 255


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
    # a local version's "+" (0.2.0+g1a2b) is no tag character
    base = base_image or f"relevo:{_NOT_IN_TAG_RE.sub('-', __version__)}"
    tag = image or f"{_repository_name(version.name)}:{version.version}"
    for option, value in (("--base-image", base), ("--image", tag)):
        problem = _image_problem(value)
        if problem:
            raise InvalidInputError(f"{option}: {value!r} is not an image reference: {problem}")
    output = output.resolve()
    refuse_unless_new_folder(output, "write the context to a new folder")
    export_bundle(registry, version.ref, output / "bundle")
    (output / "Dockerfile").write_text(_dockerfile(version.ref, name, base))
    (output / ".dockerignore").write_text("*\n!bundle/\n")
    files = sorted(p.relative_to(output).as_posix() for p in output.rglob("*") if p.is_file())
    return BuildContext(output, version.ref, name, tag, base, chosen, tuple(files))


def _repository_name(name: str) -> str:
    """`name` as a Docker repository name: lowercase, a run of other characters between two
    letters or digits one separator (`a.-b` -> `a-b`), none at either end."""

    def separator(run: re.Match[str]) -> str:
        return run.group() if _SEPARATOR_RE.fullmatch(run.group()) else "-"

    return re.sub(r"[^a-z0-9]+", separator, name.lower()).strip("._-") or "model"


def _image_problem(ref: str) -> str | None:
    """Why `ref` is not an image reference Docker takes, or None when it is one."""
    rest, at, digest = ref.partition("@")
    if at and not _DIGEST_RE.fullmatch(digest):
        return "the digest after @ must be ALGORITHM:HEX, e.g. sha256:<64 hex digits>"
    name, tag = rest, None
    if rest.rfind(":") > rest.rfind("/"):
        name, _, tag = rest.rpartition(":")
    if tag is not None and not _TAG_RE.fullmatch(tag):
        return (
            "the tag after : must be up to 128 letters, digits, '_', '.' and '-', not starting "
            "with '.' or '-'"
        )
    if not name:
        return "it names no repository"
    if len(name) > _NAME_MAX:
        return f"the name is longer than {_NAME_MAX} characters"
    host, slash, path = name.partition("/")
    # like Docker, the first part is a registry only when it looks like a host name
    if not slash or not ("." in host or ":" in host or host == "localhost"):
        host, path = "", name
    elif not _HOST_RE.fullmatch(host):
        return f"{host!r} is not a registry host[:port]"
    for component in path.split("/"):
        if not component:
            return "the repository name has an empty part (a '/' at an end, or '//')"
        if _COMPONENT_RE.fullmatch(component):
            continue
        if _COMPONENT_RE.fullmatch(component.lower()):
            return f"the repository name must be lowercase ({component!r})"
        return (
            f"{component!r}: each part of the repository name is lowercase letters and digits "
            "joined by one '.', '_' or '__', or by dashes"
        )
    return None


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
