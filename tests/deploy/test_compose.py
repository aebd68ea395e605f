"""The compose stack validates against the Compose Specification's JSON schema, and hangs
together: relevo and its migration built from the repository's Dockerfile, the migration before
the server, every mounted file present, secrets required from .env, one grace period."""

from __future__ import annotations

import re

import jsonschema
import pytest
from deployfiles import COMPOSE, KUBERNETES, ROOT, load_all, load_yaml, vendored_schema


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE)


def test_the_compose_file_follows_the_compose_specification(compose):
    jsonschema.validate(compose, vendored_schema("compose-spec"))


def test_relevo_and_its_migration_come_from_the_repository_dockerfile(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "relevo", "prometheus", "grafana"}
    for name in ("migrate", "relevo"):
        build = services[name]["build"]
        assert (COMPOSE.parent / build["context"]).resolve() == ROOT
        assert (ROOT / build["dockerfile"]).is_file()
        assert build["args"]["RELEVO_EXTRAS"] == "postgres"
    assert services["migrate"]["command"] == ["relevo", "db", "upgrade"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["relevo"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    assert services["relevo"]["command"][:3] == ["relevo", "serve", "--host"]


def test_secrets_come_from_the_environment_and_are_required(compose):
    text = COMPOSE.read_text()
    for variable in ("POSTGRES_PASSWORD", "RELEVO_API_TOKEN", "RELEVO_ADMIN_TOKEN"):
        assert re.search(rf"\$\{{{variable}:\?[^}}]+\}}", text), variable
    example = (COMPOSE.parent / "env.example").read_text()
    for variable in set(re.findall(r"\$\{(\w+):\?", text)):
        assert f"\n{variable}=\n" in f"\n{example}", variable
    database = compose["services"]["relevo"]["environment"]["RELEVO_DATABASE_URL"]
    assert database.startswith("postgresql://relevo:${POSTGRES_PASSWORD:?")
    assert database.endswith("@postgres:5432/relevo")


def test_every_mounted_file_exists(compose):
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), volume


def test_the_stop_grace_period_matches_kubernetes(compose):
    (deployment,) = load_all(KUBERNETES / "base" / "deployment.yaml")
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert compose["services"]["relevo"]["stop_grace_period"] == f"{grace}s"
    drain = compose["services"]["relevo"]["environment"]["RELEVO_SHUTDOWN_DRAIN_S"]
    kustomization = load_yaml(KUBERNETES / "base" / "kustomization.yaml")
    literals = kustomization["configMapGenerator"][0]["literals"]
    assert f"RELEVO_SHUTDOWN_DRAIN_S={drain}" in literals
