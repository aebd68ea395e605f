"""`relevo containerize`, `relevo models export|import` and `relevo db upgrade` through the CLI:
the files written, versions that keep their NAME:VERSION across stores, and clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
import pytest

import relevo
from relevo.registry.artifacts import tree_sha256
from relevo.registry.bundle import MANIFEST
from relevo.store.engine import head_revision


@pytest.fixture
def two_versions(rv, churn_pipeline, churn_frame):
    rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    return rv.registry.register(
        "churn", churn_pipeline, churn_frame, target="churned", metrics={"auc": 0.81}
    )


def test_containerize_writes_a_context_that_bakes_the_version(cli, two_versions, tmp_path):
    out = tmp_path / "ctx"
    result = cli("containerize", "churn:2", "--output", out, "--json")
    assert result.exit_code == 0, result.output
    ctx = json.loads(result.stdout)
    assert ctx["model"] == "churn:2"
    assert ctx["image"] == "churn:2"
    assert ctx["base_image"] == f"relevo:{relevo.__version__}"
    assert ctx["extras"] == ["postgres"]  # scikit-learn needs no extra
    assert ctx["build"] == f"docker build --build-arg RELEVO_IMAGE=relevo:0.1.0 -t churn:2 {out}"
    dockerfile = (out / "Dockerfile").read_text()
    assert "ARG RELEVO_IMAGE=relevo:0.1.0\nFROM ${RELEVO_IMAGE}\n" in dockerfile
    assert "COPY --chown=relevo:relevo bundle /opt/relevo/bundle\n" in dockerfile
    assert "RUN relevo models import /opt/relevo/bundle --deploy churn\n" in dockerfile
    manifest = orjson.loads((out / "bundle" / MANIFEST).read_bytes())
    assert manifest["model"]["ref"] == "churn:2"
    assert manifest["model"]["metrics"] == {"auc": 0.81}
    artifact = Path(manifest["model"]["artifact"]["path"]).name
    assert ctx["files"] == [
        ".dockerignore",
        "Dockerfile",
        f"bundle/artifact/{artifact}",
        f"bundle/{MANIFEST}",
    ]
    assert (out / ".dockerignore").read_text() == "*\n!bundle/\n"


def test_containerize_prints_the_build_commands(cli, two_versions, tmp_path):
    out = tmp_path / "ctx"
    result = cli(
        "containerize", "churn:1", "-o", out, "--deployment", "churn-eu", "--image", "acme/churn:1"
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert f"docker build --build-arg RELEVO_IMAGE=relevo:0.1.0 -t acme/churn:1 {out}" in text
    assert "docker build --build-arg RELEVO_EXTRAS=postgres -t relevo:0.1.0 ." in text
    assert "--deploy churn-eu\n" in (out / "Dockerfile").read_text()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["churn:9"], 3, "model churn:9 not found"),
        (["churn:1", "--extras", "postgres,gpu"], 2, "unknown extra gpu"),
        (["churn:1", "--image", "churn:1 && rm -rf /"], 2, "is not an image reference"),
        (["churn:1", "--deployment", "a b"], 2, "invalid deployment name"),
    ],
)
def test_containerize_refuses_clearly(cli, two_versions, tmp_path, args, code, message):
    result = cli("containerize", *args, "--output", tmp_path / "ctx")
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("option", "ref", "why"),
    [
        ("--image", "MyTeam/Churn:1", "the repository name must be lowercase ('MyTeam')"),
        ("--base-image", "ghcr.io/MyOrg/relevo:0.1.0", "must be lowercase ('MyOrg')"),
        ("--image", "churn:.1", "the tag after : must be"),
        ("--image", "churn@sha256:abc", "the digest after @ must be"),
        ("--image", "acme//churn:1", "an empty part"),
    ],
)
def test_containerize_says_why_an_image_reference_is_refused(
    cli, two_versions, tmp_path, option, ref, why
):
    # what docker build -t would refuse, refused before any file is written
    result = cli("containerize", "churn:1", "--output", tmp_path / "ctx", option, ref)
    assert result.exit_code == 2, result.output
    assert f"{option}: {ref!r} is not an image reference: " in result.stderr
    assert why in " ".join(result.stderr.split())
    assert not (tmp_path / "ctx").exists()


def test_containerize_takes_a_registry_port_and_a_digest(cli, two_versions, tmp_path):
    base = "localhost:5000/ml/relevo@sha256:" + "ab" * 32
    result = cli("containerize", "churn:1", "-o", tmp_path / "ctx", "--base-image", base, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["base_image"] == base


@pytest.mark.parametrize(
    ("name", "image"),
    [("churn-", "churn:1"), ("churn_", "churn:1"), ("a.-b", "a-b:1"), ("Churn.EU", "churn.eu:1")],
)
def test_containerize_tags_any_model_name_as_docker_takes_it(
    cli, rv, churn_pipeline, churn_frame, tmp_path, name, image
):
    # Docker's grammar: lowercase parts joined by one '.', '_', '__' or a run of '-'
    rv.registry.register(name, churn_pipeline, churn_frame, target="churned")
    result = cli("containerize", f"{name}:1", "--output", tmp_path / "ctx", "--json")
    assert result.exit_code == 0, result.output
    ctx = json.loads(result.stdout)
    assert (ctx["image"], ctx["deployment"]) == (image, name)
    assert f" -t {image} " in ctx["build"]


def test_containerize_refuses_a_folder_that_is_not_empty(cli, two_versions, tmp_path):
    out = tmp_path / "ctx"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = cli("containerize", "churn:1", "--output", out)
    assert result.exit_code == 2
    assert "is not empty" in result.stderr
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("command", "output"),
    [
        (["models", "export", "churn:1"], "model.joblib"),
        (["containerize", "churn:1"], "model.joblib"),
        (["models", "export", "churn:1"], "model.joblib/bundle"),
        (["containerize", "churn:1"], "model.joblib/ctx"),
    ],
)
def test_an_output_that_is_a_file_is_refused_as_one(cli, two_versions, tmp_path, command, output):
    model = tmp_path / "model.joblib"
    model.write_bytes(b"mine")
    result = cli(*command, "--output", tmp_path / output)
    assert result.exit_code == 2, result.output
    assert f"{model} is a file, not a folder" in " ".join(result.stderr.split())
    assert model.read_bytes() == b"mine"


def test_a_version_moves_to_another_store_with_its_number(
    cli, two_versions, rv, tmp_path, churn_frame
):
    bundle = tmp_path / "bundle"
    assert cli("models", "export", "churn:2", "--output", bundle).exit_code == 0
    other = relevo.Relevo(home=tmp_path / "other")  # a store that knows no model
    from typer.testing import CliRunner

    from relevo.cli.main import app

    runner = CliRunner()
    argv = ["--home", str(tmp_path / "other")]
    first = runner.invoke(
        app, [*argv, "models", "import", str(bundle), "--deploy", "churn", "--json"]
    )
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout) == {"model": "churn:2", "added": True, "deployment": "churn"}
    again = runner.invoke(
        app, [*argv, "models", "import", str(bundle), "--deploy", "churn", "--json"]
    )
    assert json.loads(again.stdout)["added"] is False
    try:
        imported = other.registry.get("churn:2")
        assert [v.ref for v in other.registry.list()] == ["churn:2"]
        assert imported.artifact_sha256 == two_versions.artifact_sha256
        assert imported.signature == two_versions.signature
        assert imported.metrics == {"auc": 0.81}
        assert other.registry.reference_profile("churn:2").to_dict() == (
            rv.registry.reference_profile("churn:2").to_dict()
        )
        # the same scores from the imported copy as from the original
        rows = churn_frame.drop(columns=["churned"]).head(50)
        mine = rv.registry.load("churn:2").model
        theirs = other.registry.load("churn:2").model
        np.testing.assert_array_equal(
            mine.predict(rows).probabilities, theirs.predict(rows).probabilities
        )
        assert other.deployments.get("churn").champion_ref == "churn:2"
        assert len(other.deployments.history("churn")) == 1  # the second import changed nothing
    finally:
        other.close()


def test_import_refuses_a_changed_artifact_and_a_clash(cli, two_versions, rv, tmp_path):
    bundle = tmp_path / "bundle"
    assert cli("models", "export", "churn:1", "--output", bundle).exit_code == 0
    # churn:1 exists here with the same artifact: a no-op
    result = cli("models", "import", bundle, "--json")
    assert json.loads(result.stdout)["added"] is False
    manifest = orjson.loads((bundle / MANIFEST).read_bytes())
    (artifact,) = (bundle / "artifact").iterdir()
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    result = cli("models", "import", bundle)
    assert result.exit_code == 5
    assert "does not match the sha256" in result.stderr
    # a bundle claiming churn:1 with another (intact) artifact is a conflict
    manifest["model"]["artifact"]["sha256"] = tree_sha256(artifact)
    (bundle / MANIFEST).write_bytes(orjson.dumps(manifest))
    result = cli("models", "import", bundle)
    assert result.exit_code == 4
    assert "already registered with another artifact" in result.stderr
    result = cli("models", "import", tmp_path / "nowhere")
    assert result.exit_code == 2
    assert f"{MANIFEST} is missing" in result.stderr


def test_db_upgrade_reports_the_revision(cli):
    result = cli("db", "upgrade", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["revision"] == head_revision()
    result = cli("db", "upgrade")
    assert f"revision {head_revision()}" in result.stdout


def test_importing_a_known_version_gives_a_new_replica_its_artifact(
    cli, two_versions, database_url, tmp_path
):
    # a second pod on the same database: the version is registered, its artifact is not here
    bundle = tmp_path / "bundle"
    assert cli("models", "export", "churn:2", "--output", bundle).exit_code == 0
    replica = relevo.Relevo(home=tmp_path / "replica", database_url=database_url)
    try:
        with pytest.raises(relevo.errors.NotFoundError, match="artifact file is missing"):
            replica.registry.load("churn:2")
        from relevo.registry.bundle import import_bundle

        version, added = import_bundle(replica.registry, bundle)
        assert (version.ref, added) == ("churn:2", False)
        assert replica.registry.load("churn:2").version.ref == "churn:2"
    finally:
        replica.close()
