"""The CI/CD templates for a model repository: GitHub's workflow and GitLab's pipeline validate
against their JSON schemas, run the stages in order (train, register, validate, image, staging,
production), and every `relevo` command they run parses against the CLI."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

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


#: what GitHub puts in place of a workflow's expressions, as it does before a step runs (names
#: in their owner's case); the register job's output becomes $REF
GITHUB_EXPRESSIONS = {
    "github.repository_owner": "MyOrg",
    "github.repository": "MyOrg/Churn-Model",
    "needs.register.outputs.ref": "$REF",
    "needs.register.outputs.champion": "$CHAMPION",
}


def _expand(text: str) -> str:
    for expression, value in GITHUB_EXPRESSIONS.items():
        text = text.replace(f"${{{{ {expression} }}}}", value)
    return text


def _github_steps(job: str) -> list[str]:
    """A GitHub job's shell steps but pip's, its expressions expanded."""
    steps = load_yaml(GITHUB)["jobs"][job]["steps"]
    return [_expand(s["run"]) for s in steps if not s.get("run", "pip ").startswith("pip ")]


def _production_github() -> list[str]:
    return _github_steps("production")


def _production_gitlab() -> list[str]:
    return ["\n".join(load_yaml(GITLAB)["production"]["script"])]


@pytest.fixture
def job_env(tmp_path: Path) -> dict[str, str]:
    """What a job's shell steps run with: this checkout's `relevo` and a `docker` that writes its
    arguments to docker.log, one a line, on PATH; GITHUB_ENV a file."""
    shims = tmp_path / "bin"
    shims.mkdir()
    for name, body in {
        "relevo": f'exec {sys.executable} -m relevo "$@"',
        "docker": f"printf '%s\\n' \"$@\" >> {tmp_path / 'docker.log'}",
    }.items():
        (shims / name).write_text(f"#!/bin/sh\n{body}\n")
        (shims / name).chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_ENV": str(tmp_path / "github.env"),
        "GITHUB_SHA": "abc123",
        "CI_COMMIT_SHA": "abc123",
        "MODEL": "churn",
    }


def _github_shell() -> list[str]:
    """How GitHub runs the workflow's `run` steps: `bash -e {0}` for a step without `shell:`,
    `bash --noprofile --norc -eo pipefail {0}` with `shell: bash` (here from `defaults`)."""
    shell = load_yaml(GITHUB).get("defaults", {}).get("run", {}).get("shell")
    if shell == "bash":
        return ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"]
    return ["bash", "-e", "-c"]


#: how GitLab Runner runs a job's script in bash
GITLAB_SHELL = ["bash", "-eo", "pipefail", "-c"]


def _run(steps: list[str], env: dict[str, str], cwd: Path, shell: list[str] | None = None) -> None:
    """Run each step in `shell` (default: as GitHub runs the workflow's steps), with what it
    adds to GITHUB_ENV."""
    env = dict(env)
    for script in steps:
        done = subprocess.run(
            [*(shell or _github_shell()), script],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        added = Path(env["GITHUB_ENV"])
        if added.exists():
            env.update(line.split("=", 1) for line in added.read_text().splitlines())


@pytest.mark.parametrize(
    "production", [_production_github, _production_gitlab], ids=["github", "gitlab"]
)
def test_the_production_job_releases_whole_first_then_as_a_canary(
    production, job_env, tmp_path, churn_pipeline, churn_frame
):
    # the job's own shell lines against a fresh production store
    env = {**job_env, "RELEVO_HOME": str(tmp_path / "production")}
    bundle = tmp_path / "build" / "bundle"
    served = {1: ("basic", "churn:1", None), 2: ("canary", "churn:1", "churn:2")}
    with relevo.Relevo(home=tmp_path / "staging") as staging:
        for version in (1, 2):
            staging.registry.register("churn", churn_pipeline, churn_frame, target="churned")
            shutil.rmtree(bundle, ignore_errors=True)
            export_bundle(staging.registry, f"churn:{version}", bundle)
            shell = GITLAB_SHELL if production is _production_gitlab else None
            _run(production(), {**env, "REF": f"churn:{version}"}, tmp_path, shell)
            with relevo.Relevo(home=tmp_path / "production") as store:
                deployment = store.deployments.get("churn")
            assert served[version] == (
                deployment.strategy,
                deployment.champion_ref,
                deployment.challenger_ref,
            )
    assert (deployment.weight, deployment.key_column) == (0.05, "customer_id")


def test_the_github_image_job_names_its_images_in_lowercase(
    job_env, tmp_path, churn_pipeline, churn_frame
):
    # GitHub keeps the case of owner and repository names; Docker refuses an upper-case one
    env = {
        **job_env,
        **{name: _expand(value) for name, value in load_yaml(GITHUB)["env"].items()},
        "GITHUB_REPOSITORY_OWNER": GITHUB_EXPRESSIONS["github.repository_owner"],
        "GITHUB_REPOSITORY": GITHUB_EXPRESSIONS["github.repository"],
        "RELEVO_HOME": str(tmp_path / "staging"),
        "REF": "churn:1",
    }
    with relevo.Relevo(home=tmp_path / "staging") as staging:
        staging.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    _run(_github_steps("image"), env, tmp_path)
    docker = (tmp_path / "docker.log").read_text().splitlines()
    assert docker == [
        "build",
        "--build-arg",
        "RELEVO_IMAGE=ghcr.io/myorg/relevo:0.1.0",
        "-t",
        "ghcr.io/myorg/churn-model/churn:1",
        "build/image",
        "push",
        "ghcr.io/myorg/churn-model/churn:1",
    ]
    context = json.loads((tmp_path / "build" / "context.json").read_text())
    assert context["base_image"] == "ghcr.io/myorg/relevo:0.1.0"


@pytest.mark.parametrize("template", ["github", "gitlab"])
def test_a_failed_gate_fails_the_validate_job_and_keeps_its_report(template, job_env, tmp_path):
    # `relevo validate` prints its report and exits 8: a check failed. The job pipes it to tee,
    # which answers 0: without pipefail GitHub's default bash passed the job, the gate ignored.
    (tmp_path / "bin" / "relevo").write_text("#!/bin/sh\necho '{\"passed\": false}'\nexit 8\n")
    (tmp_path / "build").mkdir()
    if template == "github":
        job = load_yaml(GITHUB)["jobs"]["validate"]
        (script,) = _github_steps("validate")
        shell = _github_shell()
        (upload,) = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload")]
        assert upload["if"] == "always()" and upload["with"]["path"] == "build/validation.json"
    else:
        job = load_yaml(GITLAB)["validate"]
        script, shell = "\n".join(job["script"]), GITLAB_SHELL
        assert job["artifacts"]["when"] == "always"
    done = subprocess.run(
        [*shell, script],
        cwd=tmp_path,
        env={**job_env, "REF": "churn:2", "CHAMPION": "churn:1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 8, done.stderr
    assert json.loads((tmp_path / "build" / "validation.json").read_text()) == {"passed": False}
