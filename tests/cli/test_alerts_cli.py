"""`relevo alerts` (list, rules, --prometheus, silence, silences, evaluate) and `relevo monitor`
as a user runs them: output, JSON and exit codes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import yaml
from sqlalchemy import insert

import relevo
from relevo.store.tables import deployment_events


def _deploy(cli, churn_files) -> None:
    result = cli(
        "models",
        "register",
        "churn",
        churn_files.model,
        "--reference",
        churn_files.reference,
        "--target",
        "churned",
    )
    assert result.exit_code == 0, result.output
    assert cli("deploy", "churn", "churn:1").exit_code == 0


def _gate_rollback(relevo_home, database_url) -> None:
    with (
        relevo.Relevo(home=relevo_home, database_url=database_url) as rv,
        rv.store.engine.begin() as conn,
    ):
        conn.execute(
            insert(deployment_events).values(
                deployment="churn",
                action="rollback",
                state={},
                actor="gate",
                reason="gate latency_p99 failed",
                created_at=datetime.now(UTC),
            )
        )


def test_evaluate_list_and_silence(cli, churn_files, relevo_home, database_url):
    _deploy(cli, churn_files)
    assert "No alert fires." in cli("alerts").stdout
    _gate_rollback(relevo_home, database_url)
    evaluated = cli("alerts", "evaluate")
    assert evaluated.exit_code == 0, evaluated.output
    assert "1 alert(s) started, 0 resolved, 0 still firing; 1 notification(s) sent" in (
        evaluated.stdout
    )
    again = cli("alerts", "evaluate", "--json")  # still firing: nothing new, nothing sent
    assert again.exit_code == 0, again.output
    body = json.loads(again.stdout)
    assert (body["started"], body["resolved"], body["still_firing"]) == (0, 0, 1)
    assert body["notifications"] == []
    assert "0 alert(s) started, 0 resolved, 1 still firing; 0 notification(s) sent" in (
        cli("alerts", "evaluate").stdout
    )
    shown = cli("alerts")
    assert shown.exit_code == 0
    assert "rollout_gate" in shown.stdout and "gate latency_p99 failed" in shown.stdout
    (alert,) = json.loads(cli("alerts", "--deployment", "churn", "--json").stdout)
    assert alert["state"] == "firing" and alert["severity"] == "critical"

    made = cli(
        "alerts",
        "silence",
        "--deployment",
        "churn",
        "--rule",
        "rollout_gate",
        "--for",
        "2h",
        "--reason",
        "known",
    )
    assert made.exit_code == 0, made.output
    assert "Silenced deployment churn, rule rollout_gate until" in made.stdout
    (silence,) = json.loads(cli("alerts", "silences", "--json").stdout)
    until = datetime.fromisoformat(silence["until"])
    assert timedelta(hours=1.9) < until - datetime.now(UTC) <= timedelta(hours=2)
    assert "(silenced)" in cli("alerts").stdout
    assert json.loads(cli("alerts", "--json").stdout)[0]["silenced"] is True

    soon = cli("alerts", "silence", "--deployment", "churn", "--for", "soon")
    assert soon.exit_code == 2 and "invalid --for 'soon': a duration like 30m" in soon.stderr
    assert cli("alerts", "silence", "--deployment", "nope", "--for", "1h").exit_code == 3
    assert cli("alerts", "--deployment", "nope").exit_code == 3


def test_rules_and_their_prometheus_equivalent(cli, churn_files):
    _deploy(cli, churn_files)
    shown = cli("alerts", "rules")
    assert shown.exit_code == 0
    assert "no_predictions" in shown.stdout and "2 of 3" in shown.stdout
    rules = {r["name"]: r for r in json.loads(cli("alerts", "rules", "--json").stdout)}
    assert rules["latency_p99"]["threshold_ms"] == 500 and rules["latency_p99"]["enabled"]
    assert cli("monitor", "churn", "--set", "alerts.latency_p99.threshold_ms=800").exit_code == 0
    mine = json.loads(cli("alerts", "rules", "--deployment", "churn", "--json").stdout)
    assert {r["name"]: r for r in mine}["latency_p99"]["threshold_ms"] == 800

    text = cli("alerts", "rules", "--prometheus", "--deployment", "churn").stdout
    parsed = yaml.safe_load(text)
    (group,) = parsed["groups"]
    by_name = {r["alert"]: r for r in group["rules"]}
    assert by_name["RelevoNoPredictions"]["expr"] == (
        'max by (deployment, subject) (relevo_alert_firing{rule="no_predictions"}) > 0'
    )
    assert by_name["RelevoNoPredictions"]["labels"]["severity"] == "critical"
    assert by_name["RelevoRequestLatencyP99"]["expr"].endswith("> 0.8")
    assert "relevo_requests_total" in by_name["RelevoServerErrors"]["expr"]


def test_monitor_shows_and_sets_the_settings(cli, churn_files):
    _deploy(cli, churn_files)
    assert "uses the default monitoring settings" in cli("monitor", "churn").stdout
    changed = cli(
        "monitor",
        "churn",
        "--set",
        "alerts.no_predictions.enabled=false",
        "--set",
        "drift.threshold=0.25",
        "--set",
        'alerts.webhook_url="http://127.0.0.1:9/hook"',
    )
    assert changed.exit_code == 0, changed.output
    assert "alerts.no_predictions.enabled" in changed.stdout
    assert "Rules off: no_predictions" in changed.stdout
    data = json.loads(cli("monitor", "churn", "--json").stdout)
    assert data["monitoring"] == {
        "alerts": {"no_predictions": {"enabled": False}, "webhook_url": "http://127.0.0.1:9/hook"},
        "drift": {"threshold": 0.25},
    }
    status = json.loads(cli("status", "churn", "--json").stdout)
    assert status["revision"] == 1  # settings are not a routing change
    bad = cli("monitor", "churn", "--set", "alerts.latency_p99.threshold_ms=-3")
    assert bad.exit_code == 2 and "alerts.latency_p99.threshold_ms" in bad.stderr
    assert cli("monitor", "churn", "--set", "nonsense").exit_code == 2
    assert cli("monitor", "nope").exit_code == 3
