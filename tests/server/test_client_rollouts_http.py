"""relevo.Client's rollout control against a real server: deploy a canary, promote, roll back,
read the status and the audit trail, with the semantics of `relevo promote|rollback|history`."""

from __future__ import annotations

import pytest
from sklearn.base import clone

import relevo
from relevo.datasets import CHURN_FEATURES, CHURN_TARGET
from relevo.errors import AuthError, ConflictError, InvalidInputError, NotFoundError


def _small(rv, churn_pipeline, churn_frame):
    other = clone(churn_pipeline).set_params(model__C=0.01)
    other.fit(churn_frame[CHURN_FEATURES], churn_frame[CHURN_TARGET])
    return rv.registry.register("churn-small", other, churn_frame, target="churned")


def test_a_canary_stepped_promoted_and_rolled_back_through_the_client(
    live_server, rv, deployed, churn_pipeline, churn_frame
):
    small = _small(rv, churn_pipeline, churn_frame)
    with relevo.Client(live_server.url) as client:
        canary = client.deploy("churn", small.ref, steps=[10, 100], manual=True, reason="try it")
        assert (canary["strategy"], canary["challenger"], canary["weight"]) == (
            "canary",
            small.ref,
            0.1,
        )
        assert canary["key_column"] == "customer_id"  # kept, as `relevo deploy` keeps it

        status = client.status("churn")
        assert status["revision"] == canary["revision"]
        assert [m["model"] for m in status["models"]] == [deployed.ref, small.ref]

        step = client.promote("churn", reason="step looks fine", revision=status["revision"])
        assert (step["challenger"], step["weight"]) == (small.ref, 1.0)
        # a second operator promoting the revision they saw is refused, not a second step
        with pytest.raises(ConflictError, match=str(status["revision"])):
            client.promote("churn", revision=status["revision"])

        done = client.promote("churn")
        assert (done["model"], done["previous"], done["challenger"]) == (
            small.ref,
            deployed.ref,
            None,
        )
        back = client.rollback("churn", reason="AUC lower")
        assert back["model"] == deployed.ref

        events = client.history("churn")
        assert [d["name"] for d in client.deployments()] == ["churn"]

    # the trail the client read is the one the store holds, with who did what and why
    stored = rv.deployments.history("churn")
    assert [(e["id"], e["action"], e["actor"], e["reason"]) for e in events] == [
        (e.id, e.action, e.actor, e.reason) for e in stored
    ]
    assert [(e["action"], e["actor"]) for e in events] == [
        ("deploy", None),  # the fixture's deploy, made in Python
        ("deploy", "http:open"),
        ("advance", "http:open"),  # a step, not yet the promotion
        ("promote", "http:open"),
        ("rollback", "http:open"),
    ]
    assert [events[i]["reason"] for i in (1, 2, 4)] == ["try it", "step looks fine", "AUC lower"]
    assert events[-1]["state"]["model"] == deployed.ref


def test_rollout_errors_come_back_as_relevos_exceptions(live_server, deployed):
    with relevo.Client(live_server.url) as client:
        with pytest.raises(ConflictError, match="no challenger to promote"):
            client.promote("churn")
        with pytest.raises(ConflictError, match="nothing to roll back to"):
            client.rollback("churn")
        for call in (client.promote, client.rollback, client.history, client.status):
            with pytest.raises(NotFoundError, match="'nope'"):
                call("nope")
        with pytest.raises(InvalidInputError) as caught:
            client.rollback("churn", reason="x" * 2001)
        assert [p.column for p in caught.value.problems] == ["reason"]
        with pytest.raises(InvalidInputError) as caught:
            client.deploy("churn", deployed.ref, strategy="blue")  # type: ignore[arg-type]
        assert [p.column for p in caught.value.problems] == ["strategy"]
        with pytest.raises(TypeError, match=r"\[5, 25, 50, 100\]"):
            client.deploy("churn", deployed.ref, steps="5,25")  # type: ignore[arg-type]
        assert client.deployment("churn")["revision"] == 1  # nothing of it changed anything


def test_rollout_control_takes_the_admin_token(
    live_server, rv, deployed, churn_pipeline, churn_frame, spawn_server
):
    url = spawn_server(
        live_server.settings.model_copy(
            update={"admin_token": "admin-secret", "api_token": "api-secret"}
        )
    )
    small = _small(rv, churn_pipeline, churn_frame)
    with relevo.Client(url, token="api-secret") as reader:
        with pytest.raises(AuthError, match="needs the admin token") as caught:
            reader.promote("churn")
        assert caught.value.http_status == 403
        with pytest.raises(AuthError):
            reader.history("churn")
    with relevo.Client(url, token="admin-secret") as admin:
        shadow = admin.deploy("churn", small.ref, strategy="shadow", mirror=0.5)
        assert (shadow["strategy"], shadow["mirror"]) == ("shadow", 0.5)
        assert admin.rollback("churn")["challenger"] is None
        assert [(e["action"], e["actor"]) for e in admin.history("churn")[1:]] == [
            ("deploy", "token:admin"),
            ("rollback", "token:admin"),
        ]
