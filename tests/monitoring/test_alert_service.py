"""AlertService on a real store: evaluation stores states and notifies real local webhooks
(JSON and Slack-shaped), retries a receiver that fails, never waits on one that hangs; silences;
per-deployment settings that leave the routing state alone; and the bake period after a
promotion, where a firing alert rolls back to the previous champion."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from relevo.errors import InvalidInputError, NotFoundError
from relevo.monitoring.alerts import config
from relevo.monitoring.alerts.notifiers import Dispatcher
from relevo.monitoring.alerts.service import AlertService
from relevo.monitoring.signals import Signal
from relevo.routing import evaluator


class Receiver:
    """A local HTTP server that records the JSON posted to it. `plan` lists the statuses to
    answer in turn (then 200); `hang` makes it wait (until released) before answering."""

    def __init__(self, plan=(), hang=False):
        self.bodies: list = []
        self.attempts = 0
        self.plan = list(plan)
        self.release = threading.Event()
        self.hang = hang
        self.got = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.got:
                    receiver.attempts += 1
                if receiver.hang:
                    receiver.release.wait(30)
                status = receiver.plan.pop(0) if receiver.plan else 200
                if status == 200:
                    with receiver.got:
                        receiver.bodies.append(body)
                        receiver.got.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, n: int, timeout: float = 20.0) -> list:
        with self.got:
            assert self.got.wait_for(lambda: len(self.bodies) >= n, timeout), self.bodies
            return list(self.bodies)

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.close()


@pytest.fixture
def churn(rv, churn_pipeline, churn_frame):
    frame = churn_frame.head(300)
    rv.registry.register("churn", churn_pipeline, frame, target="churned")
    rv.registry.register("churn", churn_pipeline, frame, target="churned")
    rv.deployments.deploy("churn", "churn:1")
    return rv


class Switch:
    """A provider whose latency signal the test turns on and off."""

    def __init__(self):
        self.firing = False
        self.rule = "latency_p99"

    def __call__(self, rv, deployment, now):
        return [
            Signal(
                deployment,
                self.rule,
                "",
                self.firing,
                "p99 latency 812 ms, over 500 ms" if self.firing else "p99 fine",
                812.0 if self.firing else 20.0,
                500.0,
            )
        ]


def service(rv, switch, **dispatch) -> AlertService:
    options = {"timeout_s": 2.0, "retries": 3, "backoff_s": 0.05} | dispatch
    return AlertService(rv, dispatcher=Dispatcher(**options), providers=[switch])


def test_webhooks_receive_one_notification_per_incident_and_one_when_it_clears(churn, receivers):
    rv = churn
    hook, slack = Receiver(), Receiver()
    receivers += [hook, slack]
    config.update(
        rv,
        "churn",
        [f"alerts.webhook_url={json.dumps(hook.url)}", f"alerts.slack_url={json.dumps(slack.url)}"],
    )
    switch = Switch()
    svc = service(rv, switch)
    switch.firing = True
    for _ in range(5):
        svc.evaluate()
    (body,) = hook.wait_for(1)
    assert body["kind"] == "firing" and body["deployment"] == "churn"
    assert [(a["rule"], a["state"]) for a in body["alerts"]] == [("latency_p99", "firing")]
    assert body["alerts"][0]["message"] == "p99 latency 812 ms, over 500 ms"
    (text,) = slack.wait_for(1)
    assert set(text) == {"text"} and "FIRING churn" in text["text"] and "812 ms" in text["text"]
    switch.firing = False
    for _ in range(3):
        svc.evaluate()
    bodies = hook.wait_for(2)
    assert [b["kind"] for b in bodies] == ["firing", "resolved"]
    assert bodies[0]["incident"] == bodies[1]["incident"]
    assert "RESOLVED churn" in slack.wait_for(2)[1]["text"]
    svc.dispatcher.close()
    assert hook.attempts == 2 and slack.attempts == 2
    stored = svc.list(all_states=True)
    assert [(a.rule, a.state, a.notified) for a in stored] == [("latency_p99", "resolved", True)]


def test_a_receiver_that_fails_is_retried_with_backoff(churn, receivers):
    rv = churn
    flaky = Receiver(plan=[500, 500])
    receivers.append(flaky)
    config.update(rv, "churn", [f"alerts.webhook_url={json.dumps(flaky.url)}"])
    switch = Switch()
    switch.firing = True
    svc = service(rv, switch)
    for _ in range(3):
        svc.evaluate()
    (body,) = flaky.wait_for(1)
    assert body["kind"] == "firing"
    svc.dispatcher.close()
    assert flaky.attempts == 3  # 500, 500, then 200
    assert svc.dispatcher.delivered == 1 and svc.dispatcher.failed == 0


def test_a_receiver_that_hangs_never_blocks_evaluation_nor_the_others(churn, receivers):
    rv = churn
    stuck, fine = Receiver(hang=True), Receiver()
    receivers += [stuck, fine]
    rv.deployments.deploy("other", "churn:1")
    config.update(
        rv,
        "churn",
        [f"alerts.webhook_url={json.dumps(stuck.url)}", f"alerts.slack_url={json.dumps(fine.url)}"],
    )
    switch = Switch()
    switch.firing = True
    svc = service(rv, switch, timeout_s=0.5, retries=1)
    for _ in range(3):
        report = svc.evaluate()  # returns while the hanging receiver holds its delivery
    assert sorted(n.deployment for n in report.notifications) == ["churn", "other"]
    fine.wait_for(1)  # its own worker delivers, whatever the other receiver does
    assert {a.deployment for a in svc.list()} == {"churn", "other"}
    stuck.release.set()
    svc.dispatcher.close(timeout_s=10)


def test_silenced_alerts_are_listed_as_silenced_and_not_sent(churn, receivers):
    rv = churn
    hook = Receiver()
    receivers.append(hook)
    config.update(rv, "churn", [f"alerts.webhook_url={json.dumps(hook.url)}"])
    switch = Switch()
    switch.firing = True
    svc = service(rv, switch)
    made = svc.silence(deployment="churn", rule="latency_p99", duration_s=3600, reason="known")
    assert made.id is not None and [s.id for s in svc.silences()] == [made.id]
    for _ in range(4):
        report = svc.evaluate()
        assert not report.notifications
    (alert,) = svc.list()
    assert alert.silenced and alert.firing and not alert.notified
    svc.dispatcher.close()
    assert hook.attempts == 0
    with pytest.raises(InvalidInputError, match="until"):
        svc.silence(deployment="churn", until=datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(InvalidInputError, match="a year at most"):
        svc.silence(deployment="churn", duration_s=1e12)
    with pytest.raises(InvalidInputError, match="name a deployment"):
        svc.silence(duration_s=60)
    with pytest.raises(NotFoundError):
        svc.silence(deployment="nope", duration_s=60)


def test_monitoring_settings_never_touch_the_routing_state(churn):
    rv = churn
    before = rv.deployments.get("churn")
    stored = config.update(
        rv,
        "churn",
        ["alerts.latency_p99.threshold_ms=800", "drift.threshold=0.3", 'feedback.metric="auc"'],
    )
    assert stored == {
        "alerts": {"latency_p99": {"threshold_ms": 800}},
        "drift": {"threshold": 0.3},
        "feedback": {"metric": "auc"},
    }
    after = rv.deployments.get("churn")
    assert after.revision == before.revision and after == before
    assert config.get(rv, "churn") == stored
    assert "alerts" not in config.update(rv, "churn", ["alerts.latency_p99=null"])
    with pytest.raises(InvalidInputError, match=r"alerts\.latency_p99\.threshold_ms"):
        config.update(rv, "churn", ["alerts.latency_p99.threshold_ms=fast"])
    with pytest.raises(InvalidInputError, match="unknown section"):
        config.update(rv, "churn", ["routing.weight=1"])
    with pytest.raises(NotFoundError, match="nope"):
        config.get(rv, "nope")
    with pytest.raises(InvalidInputError, match="window"):  # was an OverflowError
        config.update(rv, "churn", ['drift.window="99999999999w"'])


def test_a_drift_setting_that_does_not_fit_the_models_columns_is_refused_when_saved(churn):
    """A method that cannot test a column (`ks` on a categorical one) or a column the model
    does not have was accepted, then failed every drift look and silently turned off the
    drift and data-quality alerts."""
    rv = churn
    with pytest.raises(InvalidInputError, match=r"drift\.features\.contract\.method"):
        config.update(rv, "churn", ['drift.features.contract.method="ks"'])
    with pytest.raises(InvalidInputError, match=r"drift\.features\.agee.*columns: age"):
        config.update(rv, "churn", ["drift.features.agee.threshold=0.2"])
    assert config.get(rv, "churn") == {}
    stored = config.update(rv, "churn", ['drift.features.age.method="ks"'])
    assert stored == {"drift": {"features": {"age": {"method": "ks"}}}}


def test_a_firing_alert_during_the_bake_period_rolls_the_promotion_back(churn):
    rv = churn
    switch = Switch()
    svc = service(rv, switch)
    svc.evaluate()
    rv.deployments.deploy("churn", "churn:2", bake_seconds=3600)  # a swap: a promotion
    assert rv.deployments.get("churn").previous_ref == "churn:1"
    assert evaluator.evaluate_once(rv, "test", 30) == {}  # nothing fires: it bakes on
    switch.firing = True
    for _ in range(3):
        svc.evaluate()
    (found,) = evaluator.evaluate_once(rv, "test", 30).values()
    assert found.changed and found.decision.move == "rollback"
    state = rv.deployments.get("churn")
    assert state.model_ref == "churn:1"
    last = rv.deployments.history("churn")[-1]
    assert last.action == "rollback" and last.actor == "gate"
    assert last.reason.startswith("alert during the bake period: latency_p99")
    assert "812 ms" in last.reason


def test_an_alert_older_than_the_promotion_does_not_roll_it_back(churn):
    rv = churn
    switch = Switch()
    switch.rule = "feature_drift"
    switch.firing = True
    svc = service(rv, switch)
    for _ in range(3):
        svc.evaluate()
    assert svc.list()  # drift fired before the new model came
    rv.deployments.deploy("churn", "churn:2", bake_seconds=3600)
    svc.evaluate()
    assert evaluator.evaluate_once(rv, "test", 30) == {}
    assert rv.deployments.get("churn").model_ref == "churn:2"


def test_the_old_champions_slow_rows_do_not_roll_the_new_one_back(churn):
    """After a swap, latency_p99 took the old champion's slow rows of the last five minutes
    for the new champion's: it fired and, during the bake period, rolled back a model whose
    own rows were fast."""
    from sqlalchemy import insert

    from relevo.monitoring.alerts import health
    from relevo.store.tables import predictions

    rv = churn
    t0 = datetime.now(UTC)

    def log(version: int, latency: float, seconds: range) -> None:
        rows = [
            {"id": f"v{version}-{i}", "deployment": "churn", "model_name": "churn",
             "model_version": version, "created_at": t0 + timedelta(seconds=i / 5),
             "features": "{}", "output": "{}", "latency_ms": latency}
            for i in seconds
        ]  # fmt: skip
        with rv.store.engine.begin() as conn:
            conn.execute(insert(predictions), rows)

    log(1, 900.0, range(-300, 0))  # churn:1 answered slowly for a minute
    rv.deployments.deploy("churn", "churn:2", bake_seconds=3600)
    log(2, 20.0, range(300))  # churn:2 answers fast for a minute
    svc = AlertService(rv, providers=[health.latency_p99])
    for minute in (1, 2, 3):
        svc.evaluate(t0 + timedelta(minutes=minute))
    assert svc.list("churn") == []
    assert evaluator.evaluate_once(rv, "test", 30) == {}  # it bakes on
    assert rv.deployments.get("churn").model_ref == "churn:2"
    assert [e.action for e in rv.deployments.history("churn")] == ["deploy", "deploy"]
    # churn:2 slow in its turn: its own rows fire the alert, and the bake rolls it back
    log(2, 800.0, range(750, 1050))
    for minute in (4, 4.5, 5):
        svc.evaluate(t0 + timedelta(minutes=minute))
    (alert,) = svc.list("churn")
    assert alert.rule == "latency_p99" and "p99 latency 800.0 ms" in alert.message
    (found,) = evaluator.evaluate_once(rv, "test", 30).values()
    assert found.decision.move == "rollback"
    assert rv.deployments.get("churn").model_ref == "churn:1"


def test_two_evaluations_at_once_start_one_alert_and_send_one_notification(churn, monkeypatch):
    """An on-demand evaluation beside the server's scheduled one: both read the same states
    and started the same alert twice (two incidents, two FIRING notifications)."""
    from relevo.monitoring.alerts.notifiers import Dispatcher

    rv = churn
    t0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    both, waiting = threading.Barrier(2), threading.local()
    repo = rv.store.alerts
    read = repo.open_alerts

    def open_alerts(*args, **kwargs):  # both read the states, then both go on
        found = read(*args, **kwargs)
        if getattr(waiting, "on", False):
            with contextlib.suppress(threading.BrokenBarrierError):
                both.wait(2)  # (one at a time: the first waits in vain, then goes on)
        return found

    monkeypatch.setattr(repo, "open_alerts", open_alerts)

    def latency(rv, deployment, now):
        return [Signal(deployment, "latency_p99", "", True, "p99 812 ms", 812.0, 500.0)]

    services = [
        AlertService(rv, providers=[latency], dispatcher=Dispatcher(post=lambda u, b, t: 200))
        for _ in range(2)
    ]
    services[0].evaluate(t0)
    services[0].evaluate(t0 + timedelta(minutes=1))
    notes: list = []

    def third(svc):
        waiting.on = True
        notes.extend(svc.evaluate(t0 + timedelta(minutes=2)).notifications)

    threads = [threading.Thread(target=third, args=(s,)) for s in services]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(rv.store.alerts.list("churn")) == 1
    assert [n.kind for n in notes] == ["firing"]
