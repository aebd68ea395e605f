"""The alert engine on its own: persistence (N of M), holding on unevaluable signals,
incidents, deduplicated notifications, escalation, silences, disabled rules and deleted
deployments."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from relevo.errors import InvalidInputError
from relevo.monitoring.alerts import engine
from relevo.monitoring.alerts.rules import DEFAULT_RULES, rules_for, validate_alerts
from relevo.monitoring.alerts.state import Silence
from relevo.monitoring.signals import Signal

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class Run:
    """Feeds the engine one evaluation at a time and keeps what it stores."""

    def __init__(self, rules=None, silences=()):
        self.tracks: dict = {}
        self.open: dict = {}
        self.rules = rules or rules_for(None)
        self.silences = list(silences)
        self.notes: list = []
        self.minute = 0
        self.ids = itertools.count(1)

    def step(self, *signals: Signal, live=None):
        now = T0 + timedelta(minutes=self.minute)
        self.minute += 1
        out = engine.step(
            list(signals),
            self.tracks,
            self.open,
            lambda _d: self.rules,
            self.silences,
            now,
            lambda: f"inc{next(self.ids)}",
            live,
        )
        self.tracks.update({t.key: t for t in out.tracks})
        for a in out.alerts:
            if a.firing:
                self.open[a.key] = a
            else:
                self.open.pop(a.key, None)
        self.notes.extend(out.notifications)
        return out


def sig(firing: bool, rule="latency_p99", subject="", deployment="churn", **kw) -> Signal:
    return Signal(deployment, rule, subject, firing, "p99 high" if firing else "p99 fine", **kw)


def test_an_alert_fires_only_after_n_of_m_evaluations():
    run = Run()  # latency_p99: 3 of 5
    for firing in (True, False, True):
        assert not run.step(sig(firing)).alerts
    out = run.step(sig(True))  # 3 of the last 4
    assert [a.state for a in out.alerts] == ["firing"]
    assert [n.kind for n in out.notifications] == ["firing"]


def test_one_notification_per_incident_and_one_when_it_clears():
    run = Run()
    for _ in range(10):
        run.step(sig(True))
    assert [n.kind for n in run.notes] == ["firing"]
    run.step(sig(False))
    run.step(sig(False))
    assert "churn" in {k[0] for k in run.open}  # clear_after 3: still firing
    out = run.step(sig(False))
    assert [(a.state, a.resolved_at is not None) for a in out.alerts] == [("resolved", True)]
    assert [n.kind for n in run.notes] == ["firing", "resolved"]
    assert run.notes[0].incident == run.notes[1].incident


def test_an_unevaluable_signal_holds_the_state():
    run = Run()
    for _ in range(3):
        run.step(sig(True))
    assert run.open
    for _ in range(5):  # too few rows to judge: neither resolves nor counts
        run.step(sig(False, evaluable=False))
    assert run.open
    track = run.tracks[("churn", "latency_p99", "")]
    assert track.recent == "111"


def test_related_alerts_of_a_deployment_share_one_incident():
    run = Run()
    for _ in range(3):
        run.step(sig(True))
    for _ in range(3):  # a second rule joins while the first fires
        run.step(sig(True), sig(True, rule="feature_drift", subject="age"))
    incidents = {a.incident for a in run.open.values()}
    assert len(run.open) == 2 and len(incidents) == 1
    assert [n.kind for n in run.notes] == ["firing"]  # the join is covered, not re-sent
    assert all(a.notified for a in run.open.values())
    # another deployment has an incident of its own
    for _ in range(3):
        run.step(
            sig(True), sig(True, rule="feature_drift", subject="age"), sig(True, deployment="other")
        )
    assert len({a.incident for a in run.open.values()}) == 2


def test_a_critical_alert_joining_a_warning_incident_escalates_it_once():
    run = Run()
    for _ in range(3):
        run.step(sig(True))
    for _ in range(2):  # model_errors is critical by default (3 of 5 → third evaluation)
        run.step(sig(True), sig(True, rule="model_errors"))
    out = run.step(sig(True), sig(True, rule="model_errors"))
    assert [n.kind for n in out.notifications] == ["escalated"]
    assert [a.rule for a in out.notifications[0].alerts] == ["model_errors"]
    assert [n.kind for n in run.notes] == ["firing", "escalated"]


def test_the_incident_clears_when_its_last_alert_resolves():
    run = Run()
    for _ in range(3):
        run.step(sig(True), sig(True, rule="feature_drift", subject="age"))
    for _ in range(3):  # latency clears, drift keeps firing
        run.step(sig(False), sig(True, rule="feature_drift", subject="age"))
    assert [n.kind for n in run.notes] == ["firing"]
    for _ in range(3):
        run.step(sig(False), sig(False, rule="feature_drift", subject="age"))
    assert [n.kind for n in run.notes] == ["firing", "resolved"]
    assert not run.open


def test_an_incident_sent_as_firing_is_sent_resolved_though_a_silenced_alert_of_it_fires():
    """Latency fires (sent); a silenced drift alert joins the incident. Latency clears: the
    receivers heard of nothing else, so the incident is resolved for them. It used to wait
    for the silenced alert, which was never sent, and then sent nothing."""
    run = Run(silences=[Silence(T0 + timedelta(hours=2), rule="feature_drift")])
    for _ in range(3):
        run.step(sig(True))
    for _ in range(3):
        run.step(sig(True), sig(True, rule="feature_drift", subject="age"))
    assert len({a.incident for a in run.open.values()}) == 1
    for _ in range(3):
        run.step(sig(False), sig(True, rule="feature_drift", subject="age"))
    assert [n.kind for n in run.notes] == ["firing", "resolved"]
    assert [a.rule for a in run.notes[1].alerts] == ["latency_p99"]
    for _ in range(3):
        run.step(sig(False), sig(False, rule="feature_drift", subject="age"))
    assert not run.open
    assert [n.kind for n in run.notes] == ["firing", "resolved"]  # nothing about the silenced


def test_silenced_alerts_are_kept_but_not_notified():
    silence = Silence(T0 + timedelta(hours=1), deployment="churn", rule="latency_p99")
    run = Run(silences=[silence])
    for _ in range(5):
        run.step(sig(True))
    assert run.open and not run.notes
    (alert,) = run.open.values()
    assert not alert.notified
    # the silence ends while it still fires: now it is notified
    run.silences = [replace(silence, until=T0)]
    run.step(sig(True))
    assert [n.kind for n in run.notes] == ["firing"]


def test_a_silence_matches_on_deployment_rule_and_subject():
    now = T0
    run = Run(silences=[Silence(T0 + timedelta(hours=1), subject="age")])
    for _ in range(3):
        run.step(
            sig(True, rule="feature_drift", subject="age"),
            sig(True, rule="feature_drift", subject="tenure"),
        )
    (note,) = run.notes
    assert [a.subject for a in note.alerts] == ["tenure"]
    assert Silence(now, deployment="churn").matches(note.alerts[0], now) is False  # ended


def test_a_disabled_rule_or_a_deleted_deployment_resolves_its_alert():
    run = Run()
    for _ in range(3):
        run.step(sig(True), sig(True, deployment="old"))
    assert len(run.open) == 2
    run.rules = rules_for({"latency_p99": {"enabled": False}})
    run.step(live=["churn", "old"])
    assert not run.open  # the rule is off for both
    run.rules = rules_for(None)
    for _ in range(3):
        run.step(sig(True, deployment="old"))
    run.step(live=["churn"])
    assert not run.open
    assert [n.kind for n in run.notes].count("resolved") == 3


def test_rule_settings_are_validated_field_by_field():
    with pytest.raises(InvalidInputError) as err:
        validate_alerts(
            {
                "latency_p99": {"threshold_ms": -1, "window": 0, "colour": "red"},
                "nope": {},
                "webhook_url": "ftp://x",
            }
        )
    text = str(err.value)
    for field in (
        "alerts.latency_p99.threshold_ms",
        "alerts.latency_p99.window",
        "alerts.latency_p99.colour",
        "alerts.nope",
        "alerts.webhook_url",
    ):
        assert field in text
    with pytest.raises(InvalidInputError, match="fire_after 4 > window 3"):
        validate_alerts({"no_predictions": {"fire_after": 4}})
    rules = rules_for(validate_alerts({"latency_p99": {"threshold_ms": 800, "fire_after": 1}}))
    assert rules["latency_p99"].param("threshold_ms") == 800
    assert rules["latency_p99"].fire_after == 1
    assert rules["no_predictions"] == DEFAULT_RULES["no_predictions"]
