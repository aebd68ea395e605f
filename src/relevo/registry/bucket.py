"""Artifacts in an S3-compatible bucket (AWS S3, MinIO, Ceph, moto), through fsspec's s3fs.

Every replica reaches the bucket, so a version registered by one process (with its own home)
loads in any other that shares the database and the bucket. Objects are content-addressed like
the folder store's (`<prefix>/<sha256[:2]>/<sha256>/<name>`, a directory artifact as one object
per file); a load downloads into a cache under the home and checks the digest there, so an
object changed in the bucket after registration is refused, and a cached copy that no longer
verifies is fetched again. Credentials come the standard AWS way (environment variables,
~/.aws, an instance or pod role); `RELEVO_S3_ENDPOINT_URL` points at a non-AWS server.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from relevo.errors import (
    IntegrityError,
    InvalidInputError,
    MissingExtraError,
    NotFoundError,
    RelevoError,
    UnavailableError,
)
from relevo.registry.artifacts import check_digest, content_address, tree_sha256, tree_size


class BucketArtifactStore:
    """Artifacts under `s3://bucket/prefix`, cached and verified locally to load."""

    def __init__(
        self,
        url: str,
        *,
        cache: Path,
        endpoint_url: str | None = None,
        filesystem: Any = None,
    ) -> None:
        parts = urlsplit(url)
        if not parts.netloc:
            raise InvalidInputError(
                f"RELEVO_ARTIFACTS_URL {url!r} names no bucket: use s3://bucket/prefix"
            )
        prefix = parts.path.strip("/")
        self.url = f"s3://{parts.netloc}/{prefix}".rstrip("/")
        self._base = f"{parts.netloc}/{prefix}".rstrip("/")
        self.cache = cache
        if filesystem is None:
            try:
                import s3fs
            except ImportError as exc:
                raise MissingExtraError("s3fs", "s3", "An S3 artifact store") from exc
            options: dict[str, Any] = {"use_listings_cache": False}
            if endpoint_url:
                options["endpoint_url"] = endpoint_url
            filesystem = s3fs.S3FileSystem(**options)
        self.fs = filesystem

    @property
    def location(self) -> str:
        return self.url

    def _remote(self, rel: str) -> str:
        return f"{self._base}/{rel}"

    def put(self, source: Path) -> tuple[str, str, int]:
        """Upload `source` (file or directory); returns (sha256, relative path, size).

        Uploading the same content again rewrites the same bytes under the same names, so two
        processes registering one model at once, or a damaged object, end up right. The version
        row is written only after this returns: no replica looks for a half-uploaded artifact.
        """
        sha, rel = content_address(source)
        remote = self._remote(rel)
        files = (
            [(source, remote)]
            if source.is_file()
            else [
                (child, f"{remote}/{child.relative_to(source).as_posix()}")
                for child in sorted(p for p in source.rglob("*") if p.is_file())
            ]
        )
        try:
            for local, key in files:
                self.fs.put_file(str(local), key)
        except Exception as exc:
            raise self._unavailable("write to", exc) from exc
        return sha, rel, tree_size(source)

    def exists(self, rel: str) -> bool:
        if (self.cache / rel).exists():
            return True
        try:
            return bool(self.fs.exists(self._remote(rel)))
        except Exception as exc:
            raise self._unavailable("read from", exc) from exc

    def verified_path(self, rel: str, sha256: str) -> Path:
        """A local copy of the artifact whose digest is `sha256` (downloaded when the cache has
        none that verifies); IntegrityError when the bucket's object has changed."""
        cached = self.cache / rel
        if cached.exists():
            try:
                check_digest(cached, sha256, str(cached))
                return cached
            except RelevoError:
                _remove(cached)  # a damaged cache copy: fetch it again
        remote = self._remote(rel)
        try:
            self.cache.mkdir(parents=True, exist_ok=True)
            cached.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UnavailableError(
                f"cannot write the artifact cache {self.cache}: {exc.strerror or exc}"
            ) from exc
        tmp = Path(tempfile.mkdtemp(dir=cached.parent, prefix=".incoming-"))
        try:
            staged = tmp / cached.name
            self._download(remote, staged)
            check_digest(staged, sha256, f"s3://{remote}")
            try:
                os.replace(staged, cached)
            except OSError:
                # another process of this home fetched it first (a folder cannot be replaced)
                if not cached.exists() or tree_sha256(cached) != sha256:
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return cached

    def _download(self, remote: str, staged: Path) -> None:
        try:
            info = self.fs.info(remote)
            if info.get("type") == "directory":
                keys = self.fs.find(remote)
                if not keys:
                    raise FileNotFoundError(remote)
                root = staged.resolve()
                for key in keys:
                    target = _inside(root, key[len(remote) + 1 :], remote)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    self.fs.get_file(key, str(target))
            else:
                self.fs.get_file(remote, str(staged))
        except FileNotFoundError as exc:
            raise NotFoundError(f"artifact is missing from the bucket: s3://{remote}") from exc
        except RelevoError:
            raise
        except Exception as exc:
            raise self._unavailable("read from", exc) from exc

    def _unavailable(self, verb: str, exc: Exception) -> UnavailableError:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return UnavailableError(
            f"cannot {verb} the artifact bucket {self.url}: {reason} (credentials come from "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws or a role; a non-AWS server needs "
            "RELEVO_S3_ENDPOINT_URL)"
        )


def _inside(root: Path, relative: str, remote: str) -> Path:
    """Where a folder artifact's object `relative` goes under `root`; refused when its name
    would lead out of it (`../`, an absolute or empty segment): whoever can write to the bucket
    must not make a replica write anywhere else, which the sha256 of what lands inside would
    never see."""
    parts = relative.split("/")
    target = root.joinpath(*parts).resolve() if relative else root
    if not relative or any(p in ("", ".", "..") for p in parts) or not target.is_relative_to(root):
        raise IntegrityError(
            f"the artifact s3://{remote} holds an object named {relative!r}, which leads out of "
            "its folder: refusing to load it (someone changed the bucket)"
        )
    return target


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
