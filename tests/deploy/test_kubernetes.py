"""The Kubernetes manifests: every file a kustomization lists exists and validates against the
Kubernetes schema (kubernetes-validate, offline); each overlay renders (`kubectl kustomize`,
when kubectl is installed) into objects that validate too; and the Deployment says what the
issue asks (probes, drain and grace period, non-root, resources, the Secret, the metrics
folder), the Job migrates, the PrometheusRule is the alerting rules file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from deployfiles import DOCKERFILE, KUBERNETES, PROMETHEUS, load_all, load_yaml, tool
from typer.testing import CliRunner

from relevo.cli.main import app

K8S_VERSION = "1.30.0"
OVERLAYS = ["staging", "production"]
#: custom resources of the Prometheus Operator: no schema in kubernetes-validate
CRDS = {"ServiceMonitor", "PrometheusRule"}


def _validate(obj: dict[str, Any]) -> None:
    kv = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (.[dev])"
    )
    if obj["kind"] in CRDS:
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        assert obj["metadata"]["name"]
        return
    kv.validate(obj, K8S_VERSION, strict=True)


def _kustomizations() -> list[Path]:
    return sorted(KUBERNETES.rglob("kustomization.yaml"))


@pytest.mark.parametrize("path", _kustomizations(), ids=lambda p: str(p.relative_to(KUBERNETES)))
def test_every_listed_file_exists_and_validates(path):
    kustomization = load_yaml(path)
    for entry in kustomization.get("resources", []) + kustomization.get("components", []):
        target = (path.parent / entry).resolve()
        assert target.exists(), f"{path}: {entry} does not exist"
        if target.is_file():
            for obj in load_all(target):
                _validate(obj)
        else:
            assert (target / "kustomization.yaml").is_file(), entry
    assert set(p.name for p in path.parent.glob("*.yaml")) - {"kustomization.yaml"} <= {
        Path(e).name for e in kustomization.get("resources", [])
    }, f"{path.parent}: a manifest the kustomization does not list"


def test_the_secret_example_validates():
    (secret,) = load_all(KUBERNETES / "secret.example.yaml")
    _validate(secret)
    assert set(secret["stringData"]) == {"database-url", "api-token", "admin-token"}


def _render(kustomization: Path) -> list[dict[str, Any]]:
    kubectl = tool("kubectl", "kubectl kustomize renders the overlays")
    done = subprocess.run(
        [kubectl, "kustomize", str(kustomization)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    import yaml

    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, dict[str, dict[str, Any]]]:
    objects = _render(KUBERNETES / "overlays" / request.param)
    return request.param, {o["kind"]: o for o in objects}


def test_each_overlay_renders_into_valid_objects(rendered):
    overlay, objects = rendered
    for obj in objects.values():
        _validate(obj)
        assert obj["metadata"]["namespace"] == {"staging": "relevo-staging"}.get(overlay, "relevo")
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "relevo"
    expected = {"ServiceAccount", "ConfigMap", "Service", "Deployment", "Job"}
    expected |= {"HorizontalPodAutoscaler", "PodDisruptionBudget"}
    if overlay == "production":
        expected |= CRDS
    assert set(objects) == expected


def _pod(objects: dict[str, dict[str, Any]], kind: str) -> dict[str, Any]:
    return objects[kind]["spec"]["template"]["spec"]


def _settings(objects: dict[str, dict[str, Any]]) -> dict[str, str]:
    return objects["ConfigMap"]["data"]


def test_the_deployment_probes_drains_and_runs_unprivileged(rendered):
    _, objects = rendered
    pod = _pod(objects, "Deployment")
    (container,) = pod["containers"]
    startup, live, ready = (
        container["startupProbe"],
        container["livenessProbe"],
        container["readinessProbe"],
    )
    assert "initialDelaySeconds" not in startup  # loading a large model is not a fixed delay
    assert startup["httpGet"]["path"] == "/healthz"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert live["httpGet"]["path"] == "/healthz"
    assert ready["httpGet"]["path"] == "/readyz"
    # drain + uvicorn's graceful stop (30 s in relevo serve) + the log flush budget (10 s)
    drain = float(_settings(objects)["RELEVO_SHUTDOWN_DRAIN_S"])
    assert pod["terminationGracePeriodSeconds"] == drain + 30 + 10
    assert "lifecycle" not in container  # the drain is in-process: no preStop sleep needed
    uid = int(DOCKERFILE.read_text().split("\nUSER ")[-1].split(":")[0])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    for side in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][side])


def test_the_deployment_reads_its_settings_and_secret(rendered):
    _, objects = rendered
    pod = _pod(objects, "Deployment")
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["RELEVO_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "relevo",
        "key": "database-url",
    }
    (source,) = container["envFrom"]
    assert source["configMapRef"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    # the multiprocess metrics folder is a volume of its own (emptied by relevo serve at start)
    metrics_dir = _settings(objects)["RELEVO_METRICS_DIR"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts[metrics_dir]]
    assert "emptyDir" in volumes[mounts["/var/lib/relevo"]]  # RELEVO_HOME: the spool
    annotations = objects["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(container["ports"][0]["containerPort"])


def test_every_command_the_manifests_run_is_a_relevo_command(rendered):
    _, objects = rendered
    runner = CliRunner()
    commands = []
    for kind in ("Deployment", "Job"):
        for container in _pod(objects, kind)["containers"]:
            commands.append(container["command"] + container.get("args", []))
    assert ["relevo", "db", "upgrade"] in commands
    for command in commands:
        assert command[0] == "relevo"
        result = runner.invoke(app, [*command[1:], "--help"])
        assert result.exit_code == 0, (command, result.output)


def test_the_service_and_hpa_target_the_deployment(rendered):
    overlay, objects = rendered
    labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    selector = objects["Service"]["spec"]["selector"]
    assert selector.items() <= labels.items()
    hpa = objects["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == objects["Deployment"]["metadata"]["name"]
    kinds = {m["type"] for m in hpa["metrics"]}
    assert kinds == ({"Resource", "Pods"} if overlay == "production" else {"Resource"})
    assert hpa["minReplicas"] <= objects["Deployment"]["spec"]["replicas"] <= hpa["maxReplicas"]


def test_the_prometheus_rule_is_the_alerting_rules_file():
    (rule,) = load_all(KUBERNETES / "components" / "monitoring" / "prometheusrule.yaml")
    assert rule["spec"]["groups"] == load_yaml(PROMETHEUS / "relevo-rules.yml")["groups"]


def test_the_baked_model_component_imports_without_deploying():
    import yaml

    component = load_yaml(KUBERNETES / "components" / "baked-model" / "kustomization.yaml")
    (patch,) = component["patches"]
    (op,) = yaml.safe_load(patch["patch"])
    (init,) = op["value"]
    assert init["command"] == ["relevo", "models", "import", "/opt/relevo/bundle"]
    result = CliRunner().invoke(app, [*init["command"][1:], "--help"])
    assert result.exit_code == 0


def test_the_baked_model_import_reads_the_servers_settings(tmp_path):
    # the base with the component, as docs/deploy.md's step 9 adds it: RELEVO_ARTIFACTS_URL in
    # the settings sends the artifact to the bucket the servers load from
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    base, component = (
        os.path.relpath(KUBERNETES / part, overlay) for part in ("base", "components/baked-model")
    )
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{base}]\ncomponents: [{component}]\n"
    )
    objects = {o["kind"]: o for o in _render(overlay)}
    pod = _pod(objects, "Deployment")
    (server,) = pod["containers"]
    (init,) = pod["initContainers"]
    assert init["envFrom"] == server["envFrom"]
    (source,) = init["envFrom"]
    assert source["configMapRef"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    served = {e["name"]: e for e in server["env"]}
    assert "RELEVO_DATABASE_URL" in {e["name"] for e in init["env"]}
    for variable in init["env"]:
        assert variable == served[variable["name"]]
