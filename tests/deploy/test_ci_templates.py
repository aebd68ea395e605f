"""The CI/CD templates for a model repository: GitHub's workflow and GitLab's pipeline validate
against their JSON schemas, run the stages in order (train, register, validate, image, staging,
production), and every `relevo` command they run parses against the CLI."""

from __future__ import annotations

import re
import shlex

import jsonschema
import pytest
from deployfiles import CI, load_yaml, vendored_schema
from typer.testing import CliRunner

from relevo.cli.main import app

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
