"""Content-addressed artifact storage: each artifact lives under its sha256, verified on load.

A file's digest is the sha256 of its bytes; a directory's (an MLflow model) is the sha256 of the
sorted list of its files' relative paths and digests, so renaming, adding or changing any file
changes it.

Two stores behind one small interface (`ArtifactStore`): a folder under the relevo home (the
embedded default, `FolderArtifactStore`) and an S3-compatible bucket that every replica reaches
(`relevo.registry.bucket.BucketArtifactStore`, the `s3` extra). `RELEVO_ARTIFACTS_URL` chooses
(`open_artifact_store`). Either way an artifact is stored as `<sha256[:2]>/<sha256>/<name>` and
its digest is checked before a model is loaded from it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from relevo.errors import IntegrityError, InvalidInputError, NotFoundError, UnavailableError

if TYPE_CHECKING:
    from relevo.settings import Settings

_CHUNK = 1 << 20


class ArtifactStore(Protocol):
    """Where registered artifacts live: put once at registration, fetched verified to load."""

    @property
    def location(self) -> str:
        """Where the store is (a folder, or `s3://bucket/prefix`), for messages and docs."""
        ...

    def put(self, source: Path) -> tuple[str, str, int]:
        """Store `source` (file or directory); returns (sha256, relative path, size)."""
        ...

    def verified_path(self, rel: str, sha256: str) -> Path:
        """A local path holding the artifact `rel`, after checking its digest is `sha256`
        (IntegrityError when it is not, NotFoundError when it is missing)."""
        ...

    def exists(self, rel: str) -> bool:
        """Whether the artifact `rel` is there (not checked: a quick look before a deploy)."""
        ...


def open_artifact_store(settings: Settings) -> ArtifactStore:
    """The artifact store the settings name: `RELEVO_ARTIFACTS_URL` (`s3://bucket/prefix`, or
    a folder path or `file://` URL), else the folder `artifacts` under the relevo home."""
    url = settings.artifacts_url
    if not url:
        return FolderArtifactStore(settings.artifacts_dir)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("s3", "s3a"):
        from relevo.registry.bucket import BucketArtifactStore

        return BucketArtifactStore(
            url, cache=settings.home / "artifact-cache", endpoint_url=settings.s3_endpoint_url
        )
    if scheme in ("", "file"):
        return FolderArtifactStore(Path(url.removeprefix("file://")).expanduser())
    raise InvalidInputError(
        f"RELEVO_ARTIFACTS_URL {url!r}: unknown scheme {scheme!r}; use s3://bucket/prefix "
        "(an S3-compatible bucket) or a folder path"
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def refuse_symlinks(path: Path) -> None:
    """Refuse a model folder holding a symbolic link anywhere inside it.

    A link could point outside the folder (to a secret, or to a file that changes later); its
    target would be read at load and copied into the artifact store.
    """
    if not path.is_dir():
        return
    for folder, dirs, files in os.walk(path, followlinks=False):
        for entry in sorted(dirs + files):
            full = Path(folder) / entry
            if full.is_symlink():
                rel = full.relative_to(path).as_posix()
                raise InvalidInputError(
                    f"{path.name} contains a symbolic link, {rel} -> {os.readlink(full)}; "
                    "model folders may not hold links: copy the file in instead"
                )


def content_address(source: Path) -> tuple[str, str]:
    """(sha256, relative path) of an artifact to store: where every artifact store keeps it.
    A missing or unreadable source, or one with symlinks, is refused."""
    if not source.exists():
        raise InvalidInputError(f"artifact not found: {source}")
    refuse_symlinks(source)
    try:
        sha = tree_sha256(source)
    except OSError as exc:
        raise InvalidInputError(f"cannot read artifact {source}: {exc}") from exc
    return sha, f"{sha[:2]}/{sha}/{source.name}"


def tree_sha256(path: Path) -> str:
    """The sha256 of a file, or of a directory's relative paths and file digests."""
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = child.relative_to(path).as_posix()
        digest.update(f"{rel}\0{file_sha256(child)}\n".encode())
    return digest.hexdigest()


def tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class FolderArtifactStore:
    """Artifacts in a directory: `<root>/<sha256[:2]>/<sha256>/<original name>`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def location(self) -> str:
        return str(self.root)

    def put(self, source: Path) -> tuple[str, str, int]:
        """Copy `source` (file or directory) in; returns (sha256, relative path, size)."""
        sha, rel = content_address(source)
        dest = self.root / rel
        if dest.exists() and tree_sha256(dest) != sha:
            # a damaged stored copy is replaced by the good one being registered
            if dest.is_dir():
                shutil.rmtree(dest)
            else:
                dest.unlink()
        if not dest.exists():
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UnavailableError(
                    f"cannot write artifacts under {self.root}: {exc.strerror or exc}"
                ) from exc
            # copy to a temporary sibling first so a crash never leaves a half-written artifact
            tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".incoming-"))
            try:
                staged = tmp / source.name
                if source.is_dir():
                    shutil.copytree(source, staged)
                else:
                    shutil.copy2(source, staged)
                try:
                    os.replace(staged, dest)
                except OSError:
                    # another process stored the same content first (a folder cannot be
                    # replaced): fine when what is there now is that content
                    if not dest.exists() or tree_sha256(dest) != sha:
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return sha, rel, tree_size(dest)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def verified_path(self, rel: str, sha256: str) -> Path:
        """The artifact's path after checking its content still has digest `sha256`."""
        path = self.root / rel
        if not path.exists():
            raise NotFoundError(
                f"artifact file is missing: {path}", public="artifact file is missing"
            )
        check_digest(path, sha256, str(path))
        return path


def check_digest(path: Path, sha256: str, shown: str) -> None:
    """Refuse an artifact whose content no longer has the digest it was registered with."""
    actual = tree_sha256(path)
    if actual != sha256:
        raise IntegrityError(
            f"artifact {shown} has changed since it was registered: sha256 is {actual}, "
            f"expected {sha256}; refusing to load it",
            public="artifact has changed since it was registered; refusing to load it",
        )
