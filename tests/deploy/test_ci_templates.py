"""The CI/CD templates for a model repository: GitHub's workflow and GitLab's pipeline validate
against their JSON schemas, run the stages in order (train, register, validate, image, staging,
production), and every `relevo` command they run parses against the CLI."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

import jsonschema
import pytest
from deployfiles import CI, load_yaml, vendored_schema
from typer.testing import CliRunner

import relevo
from relevo.cli.main import app
from relevo.registry.bundle import export_bundle

GITHUB = CI / "github" / "relevo-model.yml"
GITLAB = CI / "gitlab-ci.yml"

#: `relevo validate`'s options by DESIGN.md's contract (the command lands with the scale work)
VALIDATE = {"--data", "--target", "--min", "--max", "--max-latency-ms", "--against", "--json"}


def _scripts_github() -> dict[str, str]:
    workflow = load_yaml(GITHUB)
    return {
        name: "\n".join(step.get("run", "") for step in job["steps"])
        for name, job in workflow["jobs"].items()
    }


def _scripts_gitlab() -> dict[str, str]:
    pipeline = load_yaml(GITLAB)
    return {
        name: "\n".join(job["script"])
        for name, job in pipeline.items()
        if isinstance(job, dict) and "script" in job
    }


def _relevo_commands(script: str) -> list[list[str]]:
    """Each `relevo ...` command line of a shell script (continuations joined)."""
    script = script.replace("\\\n", " ")
    commands = []
    for line in script.splitlines():
        line = line.split("|")[0].split(">")[0]
        match = re.search(r"(?:^|[\s/(])relevo (\w.*)$", line)
        if match and "import relevo" not in line:
            commands.append(shlex.split(match.group(1)))
    return commands


def test_the_github_workflow_follows_githubs_schema():
    # YAML reads the key `on` as True; GitHub's schema expects the string
    workflow = {("on" if k is True else k): v for k, v in load_yaml(GITHUB).items()}
    jsonschema.validate(workflow, vendored_schema("github-workflows"))


def test_the_gitlab_pipeline_follows_gitlabs_schema():
    jsonschema.validate(load_yaml(GITLAB), vendored_schema("gitlab-ci"))


#: files of the model's repository the jobs read (the rest comes in as the jobs' artifacts)
REPOSITORY_FILES = ("requirements.txt", "train.py")


def test_every_github_job_that_reads_the_repository_checks_it_out_first():
    for name, job in load_yaml(GITHUB)["jobs"].items():
        steps = [step.get("uses", "") + step.get("run", "") for step in job["steps"]]
        reads = [i for i, step in enumerate(steps) if any(f in step for f in REPOSITORY_FILES)]
        checkout = [i for i, step in enumerate(steps) if step.startswith("actions/checkout@")]
        if reads:
            assert checkout and checkout[0] < reads[0], f"job {name}: no checkout before it reads"


def _order(needs: dict[str, list[str]]) -> list[str]:
    done: list[str] = []
    while len(done) < len(needs):
        ready = [j for j in needs if j not in done and set(needs[j]) <= set(done)]
        assert ready, f"a cycle or an unknown job in {needs}"
        done.extend(sorted(ready))
    return done


def test_the_github_jobs_run_in_the_pipelines_order():
    jobs = load_yaml(GITHUB)["jobs"]
    needs = {
        name: ([job["needs"]] if isinstance(job.get("needs"), str) else job.get("needs", []))
        for name, job in jobs.items()
    }
    assert _order(needs) == ["train", "register", "validate", "image", "staging", "production"]
    assert jobs["production"]["environment"] == "production"


def test_the_gitlab_stages_run_in_the_pipelines_order():
    pipeline = load_yaml(GITLAB)
    stages = pipeline["stages"]
    assert stages == ["train", "register", "validate", "package", "staging", "production"]
    jobs = {k: v for k, v in pipeline.items() if isinstance(v, dict) and "stage" in v}
    for name, job in jobs.items():
        for need in job.get("needs", []):
            assert stages.index(jobs[need]["stage"]) < stages.index(job["stage"]), name
    assert pipeline["production"]["when"] == "manual"


@pytest.mark.parametrize("scripts", [_scripts_github, _scripts_gitlab], ids=["github", "gitlab"])
def test_the_pipelines_register_validate_containerize_and_canary(scripts):
    commands = [c for script in scripts().values() for c in _relevo_commands(script)]
    verbs = [c[0] if c[0] not in ("models",) else " ".join(c[:2]) for c in commands]
    for verb in ("models register", "validate", "containerize", "deploy", "models import"):
        assert verb in verbs, verb
    (canary,) = [c for c in commands if c[0] == "deploy" and "canary" in c]
    assert canary[canary.index("--strategy") + 1] == "canary"
    assert "--rollout" in canary and canary[canary.index("--key") + 1] == "customer_id"


@pytest.mark.parametrize("scripts", [_scripts_github, _scripts_gitlab], ids=["github", "gitlab"])
def test_every_relevo_command_parses(scripts):
    runner = CliRunner()
    for script in scripts().values():
        for command in _relevo_commands(script):
            if command[0] == "validate" and "validate" not in _registered():
                options = {a.split("=")[0] for a in command if a.startswith("--")}
                assert options <= VALIDATE, command
                continue
            # click parses every option before --help acts: an unknown one fails here
            result = runner.invoke(app, [*command, "--help"])
            assert result.exit_code == 0, (command, result.output)


def _registered() -> set[str]:
    import typer.main

    return set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def _production_github() -> str:
    steps = load_yaml(GITHUB)["jobs"]["production"]["steps"]
    script = "\n".join(s["run"] for s in steps if not s.get("run", "pip ").startswith("pip "))
    return script.replace("${{ needs.register.outputs.ref }}", "$REF")


def _production_gitlab() -> str:
    return "\n".join(load_yaml(GITLAB)["production"]["script"])


@pytest.mark.parametrize(
    "production", [_production_github, _production_gitlab], ids=["github", "gitlab"]
)
def test_the_production_job_releases_whole_first_then_as_a_canary(
    production, tmp_path, churn_pipeline, churn_frame
):
    # the job's own shell lines against a fresh production store, `relevo` on PATH
    shim = tmp_path / "bin" / "relevo"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m relevo "$@"\n')
    shim.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}",
        "MODEL": "churn",
        "GITHUB_SHA": "abc123",
        "CI_COMMIT_SHA": "abc123",
        "RELEVO_HOME": str(tmp_path / "production"),
    }
    bundle = tmp_path / "build" / "bundle"
    served = {1: ("basic", "churn:1", None), 2: ("canary", "churn:1", "churn:2")}
    with relevo.Relevo(home=tmp_path / "staging") as staging:
        for version in (1, 2):
            staging.registry.register("churn", churn_pipeline, churn_frame, target="churned")
            shutil.rmtree(bundle, ignore_errors=True)
            export_bundle(staging.registry, f"churn:{version}", bundle)
            done = subprocess.run(
                ["bash", "-e", "-o", "pipefail", "-c", production()],
                cwd=tmp_path,
                env={**env, "REF": f"churn:{version}"},
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, done.stderr
            with relevo.Relevo(home=tmp_path / "production") as store:
                deployment = store.deployments.get("churn")
            assert served[version] == (
                deployment.strategy,
                deployment.champion_ref,
                deployment.challenger_ref,
            )
    assert (deployment.weight, deployment.key_column) == (0.05, "customer_id")
