"""Paths of the deployment files and the tools that check them (a missing tool skips its test
with the reason shown in pytest's summary)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
KUBERNETES = DEPLOY / "kubernetes"
CI = DEPLOY / "ci"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def tool(name: str, install: str) -> str:
    """The path of command `name`, or skip: `install` says how to get it."""
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed ({install}): this check did not run")
    return found


def vendored_schema(name: str) -> dict[str, Any]:
    """A JSON schema vendored by check-jsonschema (compose-spec, github-workflows, gitlab-ci)."""
    import json

    package = pytest.importorskip(
        "check_jsonschema", reason="check-jsonschema is not installed (pip install -e '.[dev]')"
    )
    path = Path(package.__file__).parent / "builtin_schemas" / "vendor" / f"{name}.json"
    return json.loads(path.read_text())
