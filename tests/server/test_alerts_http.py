"""Alerts over real HTTP: evaluation on demand and on the server's schedule (with its lease),
GET /v1/alerts, silences, per-deployment monitoring settings, the gauges on /metrics, and the
tokens and errors of each route."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert

from relevo.server.background import BackgroundServer
from relevo.store.tables import deployment_events

ADMIN = {"Authorization": "Bearer admin-secret"}
API = {"Authorization": "Bearer api-secret"}


def gate_rollback(rv, reason="gate error_rate failed: 40 errors in 100 rows"):
    with rv.store.engine.begin() as conn:
        conn.execute(
            insert(deployment_events).values(
                deployment="churn",
                action="rollback",
                state={},
                actor="gate",
                reason=reason,
                created_at=datetime.now(UTC) - timedelta(minutes=1),
            )
        )


def gauge(url: str, name: str, **labels: str) -> float | None:
    text = httpx.get(f"{url}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def test_evaluate_list_silence_and_settings_over_http(rv, deployed, server_settings):
    settings = server_settings.model_copy(
        update={"admin_token": "admin-secret", "api_token": "api-secret", "monitor_interval_s": 0}
    )
    server = BackgroundServer(settings)
    url = server.start()
    try:
        assert httpx.get(f"{url}/v1/alerts", headers=API).json() == {"alerts": []}
        gate_rollback(rv)
        assert httpx.post(f"{url}/v1/alerts/evaluate", headers=API).status_code == 403
        report = httpx.post(f"{url}/v1/alerts/evaluate", headers=ADMIN)
        assert report.status_code == 200, report.text
        body = report.json()
        assert [(a["rule"], a["state"]) for a in body["changed"]] == [("rollout_gate", "firing")]
        assert [n["kind"] for n in body["notifications"]] == ["firing"]

        (alert,) = httpx.get(f"{url}/v1/alerts?deployment=churn", headers=API).json()["alerts"]
        assert alert["rule"] == "rollout_gate" and "40 errors in 100 rows" in alert["message"]
        assert alert["severity"] == "critical" and not alert["silenced"]
        assert gauge(url, "relevo_alert_firing", deployment="churn", rule="rollout_gate") == 1.0

        silence = httpx.post(
            f"{url}/v1/alerts/silences",
            headers=ADMIN,
            json={
                "deployment": "churn",
                "rule": "rollout_gate",
                "duration_s": 3600,
                "reason": "we know",
            },
        )
        assert silence.status_code == 200, silence.text
        assert silence.json()["reason"] == "we know"
        (alert,) = httpx.get(f"{url}/v1/alerts", headers=API).json()["alerts"]
        assert alert["silenced"]
        listed = httpx.get(f"{url}/v1/alerts/silences", headers=API).json()["silences"]
        assert [s["rule"] for s in listed] == ["rollout_gate"]

        monitoring = f"{url}/v1/deployments/churn/monitoring"
        put = httpx.put(
            monitoring,
            headers=ADMIN,
            json={"alerts": {"rollout_gate": {"enabled": False}}, "drift": {"threshold": 0.2}},
        )
        assert put.status_code == 200, put.text
        got = httpx.get(monitoring, headers=API).json()
        assert got["monitoring"]["drift"] == {"threshold": 0.2}
        rules = {r["name"]: r for r in got["rules"]}
        assert rules["rollout_gate"]["enabled"] is False
        assert rules["latency_p99"]["threshold_ms"] == 500
        httpx.post(f"{url}/v1/alerts/evaluate", headers=ADMIN)  # the rule is off: it resolves
        assert httpx.get(f"{url}/v1/alerts", headers=API).json()["alerts"] == []
        every = httpx.get(f"{url}/v1/alerts?all=true", headers=API).json()["alerts"]
        assert [a["state"] for a in every] == ["resolved"]
        assert gauge(url, "relevo_alert_firing", deployment="churn", rule="rollout_gate") == 0.0
        # the routing state did not change
        assert httpx.get(f"{url}/v1/deployments/churn", headers=API).json()["revision"] == 1
    finally:
        server.stop()


def test_bad_requests_name_the_field_and_tokens_come_first(deployed, server_settings):
    settings = server_settings.model_copy(
        update={"admin_token": "admin-secret", "api_token": "api-secret", "monitor_interval_s": 0}
    )
    server = BackgroundServer(settings)
    url = server.start()
    try:
        monitoring = f"{url}/v1/deployments/churn/monitoring"
        assert httpx.put(monitoring, json={}).status_code == 401
        assert httpx.put(monitoring, json={}, headers=API).status_code == 403
        bad = httpx.put(
            monitoring,
            headers=ADMIN,
            json={"alerts": {"latency_p99": {"threshold_ms": "fast"}}, "x": {}},
        )
        assert bad.status_code == 422
        columns = {p["column"] for p in bad.json()["problems"]}
        assert columns == {"x"}  # the unknown section first; then the rules
        bad = httpx.put(
            monitoring, headers=ADMIN, json={"alerts": {"latency_p99": {"threshold_ms": "fast"}}}
        )
        assert {p["column"] for p in bad.json()["problems"]} == {"alerts.latency_p99.threshold_ms"}
        assert httpx.put(monitoring, headers=ADMIN, content=b"{").status_code == 400
        missing = httpx.get(f"{url}/v1/deployments/nope/monitoring", headers=API)
        assert missing.status_code == 404 and "nope" in missing.json()["error"]
        silence = httpx.post(
            f"{url}/v1/alerts/silences",
            headers=ADMIN,
            json={"deployment": "churn", "until": "tomorrow", "colour": 1},
        )
        assert silence.status_code == 422
        assert {p["field"] for p in silence.json()["problems"]} == {"until", "colour"}
        past = httpx.post(
            f"{url}/v1/alerts/silences",
            headers=ADMIN,
            json={"deployment": "churn", "until": "2020-01-01T00:00:00Z"},
        )
        assert past.status_code == 422 and past.json()["problems"][0]["field"] == "until"
        assert httpx.get(f"{url}/v1/alerts?all=maybe", headers=API).status_code == 422
        assert httpx.get(f"{url}/v1/alerts?deployment=nope", headers=API).status_code == 404
        assert httpx.get(f"{url}/v1/alerts").status_code == 401
    finally:
        server.stop()


def test_the_server_evaluates_on_its_schedule_one_replica_at_a_time(
    rv, deployed, server_settings, spawn_server
):
    gate_rollback(rv)
    settings = server_settings.model_copy(update={"monitor_interval_s": 0.2})
    first, second = spawn_server(settings), spawn_server(settings)
    deadline = time.monotonic() + 30
    while gauge(first, "relevo_alert_firing", deployment="churn", rule="rollout_gate") != 1.0:
        assert time.monotonic() < deadline, "the scheduled evaluation never fired the alert"
        time.sleep(0.1)
    lease = rv.store.leases.get("monitoring-evaluator")
    assert lease is not None
    for url in (first, second):  # one incident, stored once, whichever replica evaluated
        (alert,) = httpx.get(f"{url}/v1/alerts").json()["alerts"]
        assert alert["rule"] == "rollout_gate"


def test_drift_scores_reach_metrics_from_the_feature_drift_signals(
    deployed, server_settings, monkeypatch
):
    from relevo.monitoring.alerts import providers
    from relevo.monitoring.signals import Signal

    def drift(rv, deployment, now):
        return [
            Signal(deployment, "feature_drift", "age", True, "PSI 0.31", 0.31, 0.2),
            Signal(deployment, "feature_drift", "tenure_months", False, "PSI 0.02", 0.02, 0.2),
        ]

    monkeypatch.setattr(providers, "PROVIDERS", [*providers.PROVIDERS, drift])
    settings = server_settings.model_copy(update={"monitor_interval_s": 0})
    server = BackgroundServer(settings)
    url = server.start()
    try:
        assert httpx.post(f"{url}/v1/alerts/evaluate").status_code == 200
        assert gauge(url, "relevo_drift_score", deployment="churn", feature="age") == 0.31
        score = gauge(url, "relevo_drift_score", deployment="churn", feature="tenure_months")
        assert score == 0.02
        # persistence: one drifted evaluation is not an alert yet (3 of 5)
        assert (
            gauge(
                url, "relevo_alert_firing", deployment="churn", rule="feature_drift", subject="age"
            )
            == 0.0
        )
        for _ in range(2):
            httpx.post(f"{url}/v1/alerts/evaluate")
        assert (
            gauge(
                url, "relevo_alert_firing", deployment="churn", rule="feature_drift", subject="age"
            )
            == 1.0
        )
    finally:
        server.stop()


SLACK = "https://hooks.slack.com/services/T000/B000/SECRETxyz"
HOOK = "https://ops:hunter2@hooks.example/relevo?token=s3cr3t"


def test_the_api_token_reads_webhook_addresses_without_their_secrets(
    deployed, server_settings, spawn_server
):
    """A Slack incoming webhook's address is its credential: a client holding only the API
    token read it whole (and could post forged alerts into the channel)."""
    tokens = {"api_token": "api-1", "admin_token": "adm-1"}
    url = spawn_server(server_settings.model_copy(update=tokens))
    admin, api = ({"Authorization": f"Bearer {t}"} for t in ("adm-1", "api-1"))
    put = httpx.put(
        f"{url}/v1/deployments/churn/monitoring",
        json={"alerts": {"slack_url": SLACK, "webhook_url": HOOK}},
        headers=admin,
    )
    assert put.status_code == 200, put.text
    read = httpx.get(f"{url}/v1/deployments/churn/monitoring", headers=api)
    assert read.status_code == 200
    for secret in ("SECRETxyz", "hunter2", "s3cr3t", "T000"):
        assert secret not in read.text, secret
    alerts = read.json()["monitoring"]["alerts"]
    assert alerts == {
        "slack_url": "https://hooks.slack.com/...",
        "webhook_url": "https://hooks.example/...",
    }
    whole = httpx.get(f"{url}/v1/deployments/churn/monitoring", headers=admin).json()
    assert whole["monitoring"]["alerts"] == {"slack_url": SLACK, "webhook_url": HOOK}


def test_a_failed_delivery_logs_the_webhook_without_its_secret(caplog):
    import logging

    from relevo.monitoring.alerts.notifiers import Dispatcher, Target

    dispatcher = Dispatcher(retries=0, post=lambda url, body, timeout: 404)
    caplog.set_level(logging.WARNING, logger="relevo.alerts")
    dispatcher.deliver(Target(SLACK, "json"), {"kind": "firing"})
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "notifying https://hooks.slack.com/... failed" in logged, logged
    assert "SECRETxyz" not in logged


def test_a_silence_the_store_cannot_keep_is_a_422_naming_its_field(rv, live_server):
    # on PostgreSQL these answered 500: a rule past its 100-character column, a subject past
    # 200, a NUL in any text; a deployment named with a NUL failed the lookup itself
    url = f"{live_server.url}/v1/alerts/silences"
    for body, field, message in [
        ({"rule": "r" * 101}, "rule", "at most 100 characters"),
        ({"subject": "s" * 201}, "subject", "at most 200 characters"),
        ({"rule": "no_pre\x00dictions"}, "rule", "no NUL characters"),
        ({"deployment": "churn", "reason": "known\x00"}, "reason", "no NUL characters"),
    ]:
        refused = httpx.post(url, json={**body, "duration_s": 60})
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["problems"] == [{"column": field, "message": message}]
    unknown = httpx.post(url, json={"deployment": "ch\x00urn", "duration_s": 60})
    assert unknown.status_code == 404, unknown.text
    assert httpx.get(url).json()["silences"] == []
    kept = httpx.post(url, json={"rule": "r" * 100, "subject": "s" * 200, "duration_s": 60})
    assert kept.status_code == 200, kept.text
    assert [s.rule for s in rv.store.alerts.silences(active_at=datetime.now(UTC))] == ["r" * 100]
