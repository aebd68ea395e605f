"""Grafana's dashboard is valid JSON on the provisioned datasource, and every metric its PromQL
names is one a live relevo server exports (or one of the two gauges the alerts work adds)."""

from __future__ import annotations

import json
import re

import httpx
from deployfiles import GRAFANA, PROMETHEUS, load_yaml
from prometheus_client.parser import text_string_to_metric_families

from relevo.server.background import BackgroundServer
from relevo.settings import Settings

#: gauges of the monitoring work (drift scores, alert state), not served by this branch yet
PENDING: set[str] = set()  # every name the dashboard and rules use is exported
METRIC = re.compile(r"\brelevo_[a-z0-9_]+\b")


def _dashboard() -> dict:
    return json.loads((GRAFANA / "relevo-dashboard.json").read_text())


def _expressions(dashboard: dict) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"]]
    return exprs


def _exported(url: str) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        names.update(sample.name for sample in family.samples)
        suffixes = {
            "counter": ["_total"],
            "histogram": ["_bucket", "_sum", "_count"],
            "gauge": [""],
        }.get(family.type, [""])
        names.update(family.name + suffix for suffix in suffixes)
    return names


def test_the_dashboard_is_provisioned_on_the_prometheus_datasource():
    dashboard = _dashboard()
    (source,) = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")[
        "datasources"
    ]
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])} | {
        p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p
    }
    assert uids == {source["uid"]}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for subject in (
        "requests",
        "latency",
        "error",
        "batch",
        "log",
        "drift",
        "alerts",
        "rollout",
        "performance",
    ):
        assert subject in titles, subject
    (provider,) = load_yaml(GRAFANA / "provisioning" / "dashboards" / "relevo.yml")["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_every_metric_the_dashboard_and_rules_name_is_exported(
    rv, churn_pipeline, churn_frame, relevo_home, database_url
):
    version = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", version.ref)
    server = BackgroundServer(Settings(home=relevo_home, database_url=database_url))
    server.start()
    try:
        rows = churn_frame.drop(columns=["churned"]).head(3).to_dict("records")
        answer = httpx.post(f"{server.url}/v1/deployments/churn/predict", json={"instances": rows})
        assert answer.status_code == 200
        exported = _exported(server.url)
    finally:
        server.stop()
    named = {m for e in _expressions(_dashboard()) for m in METRIC.findall(e)}
    rules = load_yaml(PROMETHEUS / "relevo-rules.yml")
    named |= {m for g in rules["groups"] for r in g["rules"] for m in METRIC.findall(r["expr"])}
    assert "relevo_requests_total" in named and "relevo_model_batch_rows_bucket" in named
    unknown = named - exported - PENDING
    assert not unknown, f"not exported by relevo: {sorted(unknown)}"
