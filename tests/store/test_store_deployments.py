"""Deployment saves: every change gets a revision of its own, even from concurrent writers,
and the fingerprint servers poll changes with every save."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import false, select

import relevo.store.deployments as module
from relevo.routing.deployment import Deployment
from relevo.store import Store
from relevo.store.deployments import StaleStateError
from relevo.store.tables import deployment_events


def state(name: str = "churn", version: int = 1, weight: float = 0.0) -> Deployment:
    return Deployment(name, "churn", version, datetime.now(UTC), weight=weight)


def event_states(store: Store, name: str = "churn") -> list[dict]:
    query = (
        select(deployment_events.c.state)
        .where(deployment_events.c.deployment == name)
        .order_by(deployment_events.c.id)
    )
    with store.engine.connect() as conn:
        return list(conn.execute(query).scalars())


def test_save_creates_then_bumps_the_revision_and_returns_what_is_stored(store):
    first = store.deployments.save(state(version=1), "deploy")
    second = store.deployments.save(state(version=2, weight=0.5), "deploy")
    other = store.deployments.save(state("churn-eu"), "deploy")

    assert (first.revision, second.revision, other.revision) == (1, 2, 1)
    assert store.deployments.get("churn") == second
    assert second.updated_at.tzinfo is not None
    assert [s["revision"] for s in event_states(store)] == [1, 2]
    assert event_states(store)[-1] == second.to_dict()


def test_fingerprint_changes_with_every_save(store):
    seen = {store.deployments.fingerprint()}
    for i in range(5):
        store.deployments.save(state(weight=i / 10), "deploy")
        seen.add(store.deployments.fingerprint())
    store.deployments.save(state("churn-eu"), "deploy")
    seen.add(store.deployments.fingerprint())
    assert len(seen) == 7


def test_concurrent_saves_each_get_their_own_revision(store, concurrently):
    writers, saves = 8, 10
    store.deployments.save(state(weight=-1.0), "deploy")

    def work(own: Store, i: int) -> list[Deployment]:
        out = []
        for j in range(saves):
            before = own.deployments.fingerprint()
            out.append(own.deployments.save(state(weight=i + j / 100), "deploy"))
            # a server polling right after this save must see that something changed
            assert own.deployments.fingerprint() != before
        return out

    saved = [dep for result in concurrently(writers, work) for dep in result]

    total = 1 + writers * saves
    # no update lost: the revisions handed out are 2..total, each once, each a different state
    assert sorted(dep.revision for dep in saved) == list(range(2, total + 1))
    events = event_states(store)
    assert [e["revision"] for e in events] == list(range(1, total + 1))
    # each event records the state saved under its revision, and the last one is what is stored
    by_revision = {dep.revision: dep.to_dict() for dep in saved}
    assert all(e == by_revision[e["revision"]] for e in events[1:])
    final = store.deployments.get("churn")
    assert final.revision == total
    assert final.to_dict() == by_revision[total]


def test_concurrent_first_saves_of_a_new_deployment(store, concurrently):
    saved = concurrently(8, lambda own, i: own.deployments.save(state(weight=i), "deploy"))

    assert sorted(dep.revision for dep in saved) == list(range(1, 9))
    assert (
        store.deployments.get("churn").to_dict() == max(saved, key=lambda d: d.revision).to_dict()
    )
    assert store.deployments.fingerprint()[0] == 1


def test_a_save_that_finds_the_deployment_created_meanwhile_updates_it(store, monkeypatch):
    store.deployments.save(state(weight=0.1), "deploy")
    real_update, calls = module.update, []

    def update_missing_the_row_once(table):
        calls.append(table)
        stmt = real_update(table)
        # as if the row appeared just after this UPDATE looked for it
        return stmt.where(false()) if len(calls) == 1 else stmt

    monkeypatch.setattr(module, "update", update_missing_the_row_once)
    saved = store.deployments.save(state(weight=0.2), "deploy")

    assert len(calls) == 2
    assert saved.revision == 2
    assert store.deployments.get("churn") == saved
    assert [s["revision"] for s in event_states(store)] == [1, 2]


def test_a_compare_and_set_save_refuses_a_stale_state_and_changes_nothing(store):
    first = store.deployments.save(state(), "deploy", expected_revision=0)
    with pytest.raises(StaleStateError, match="created meanwhile"):
        store.deployments.save(state(version=9), "deploy", expected_revision=0)
    second = store.deployments.save(state(version=2), "deploy", expected_revision=1)
    with pytest.raises(StaleStateError, match="changed since revision 1"):
        store.deployments.save(state(version=3), "rollback", expected_revision=first.revision)

    assert store.deployments.get("churn") == second
    assert [s["revision"] for s in event_states(store)] == [1, 2]


def test_the_audit_trail_keeps_who_and_why(store):
    store.deployments.save(state(), "deploy", actor="ana", reason="first model")
    saved = store.deployments.save(state(version=2), "rollback", actor="gate", reason="errors")
    events = store.deployments.history("churn")
    assert [(e.action, e.actor, e.reason) for e in events] == [
        ("deploy", "ana", "first model"),
        ("rollback", "gate", "errors"),
    ]
    assert events[-1].state == saved.to_dict()
    assert events[0].created_at <= events[1].created_at == saved.updated_at
    assert store.deployments.history("other") == []


def test_every_field_of_the_state_round_trips(store):
    full = Deployment(
        "churn",
        "churn",
        3,
        datetime.now(UTC),
        strategy="canary",
        challenger_name="churn-gbm",
        challenger_version=1,
        weight=0.25,
        key_column="customer_id",
        steps=(5, 25, 50, 100),
        step=1,
        min_step_rows=10,
        min_step_seconds=1.5,
        step_started_at=datetime(2026, 11, 30, 1, 2, 3, tzinfo=UTC),
        manual=True,
        mirror=0.5,
        previous_name="churn",
        previous_version=2,
        promoted_at=datetime(2026, 11, 29, tzinfo=UTC),
        bake_seconds=60.0,
        log_extra=("region", "app"),
    )
    saved = store.deployments.save(full, "deploy")
    assert store.deployments.get("churn") == saved
    assert saved.to_dict()["challenger"] == "churn-gbm:1"
