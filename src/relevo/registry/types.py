"""Values of the model registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from relevo.errors import InvalidInputError
from relevo.registry.signature import Signature

#: the largest version number every store holds (a 32-bit integer column: PostgreSQL's
#: `integer`); a larger one names no version
MAX_VERSION = 2**31 - 1


@dataclass(frozen=True)
class ModelRef:
    """`NAME:VERSION`, as users write it; `NAME` alone means the latest version."""

    name: str
    version: int | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        name, sep, version = text.partition(":")
        if not name or (sep and not version):
            raise InvalidInputError(f"expected NAME:VERSION (e.g. churn:1), got {text!r}")
        if not sep:
            return cls(name)
        try:
            # int() alone would also take " 1", "+1" and "1_0" (= 10)
            if not version.isascii() or not version.isdigit():
                raise ValueError(version)
            number = int(version)
        except ValueError:
            raise InvalidInputError(
                f"the version in {text!r} must be a whole number (e.g. churn:1)"
            ) from None
        if number < 1:
            raise InvalidInputError(f"versions start at 1, got {text!r}")
        return cls(name, number)

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}:{self.version}"


@dataclass(frozen=True)
class ModelVersion:
    """One immutable, registered version of a model."""

    name: str
    version: int
    flavor: str
    task: str
    classes: list[Any] | None
    artifact_sha256: str
    artifact_path: str
    artifact_size: int
    signature: Signature
    target: str | None
    created_at: datetime
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    library_versions: dict[str, str] = field(default_factory=dict)
    flavor_options: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def positive_class(self) -> Any:
        return self.classes[1] if self.task == "binary" and self.classes else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "flavor": self.flavor,
            "task": self.task,
            "classes": self.classes,
            "artifact": {
                "sha256": self.artifact_sha256,
                "path": self.artifact_path,
                "size": self.artifact_size,
            },
            "signature": self.signature.to_dict(),
            "target": self.target,
            "created_at": self.created_at.isoformat(),
            "description": self.description,
            "tags": self.tags,
            "metrics": self.metrics,
            "lineage": self.lineage,
            "library_versions": self.library_versions,
            "flavor_options": self.flavor_options,
        }
