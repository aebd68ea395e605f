"""Migration 0002 on a store created by 0001 with rows in it: every row is kept, a 0001
candidate becomes a challenger of the same model, logged predictions answered as champion."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import JSON, Float, Integer, String, column, insert, select, table

from relevo.store import Store
from relevo.store.engine import _alembic_config, create_store_engine, head_revision
from relevo.store.tables import UTCDateTime, predictions

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)

#: the 0001 shape of the tables the test fills
OLD_DEPLOYMENTS = table(
    "deployments",
    column("name", String),
    column("model_name", String),
    column("model_version", Integer),
    column("strategy", String),
    column("candidate_version", Integer),
    column("weight", Float),
    column("key_column", String),
    column("revision", Integer),
    column("updated_at", UTCDateTime()),
)
OLD_EVENTS = table(
    "deployment_events",
    column("deployment", String),
    column("action", String),
    column("state", JSON),
    column("created_at", UTCDateTime()),
)
OLD_PREDICTIONS = table(
    "predictions",
    column("id", String),
    column("deployment", String),
    column("model_name", String),
    column("model_version", Integer),
    column("created_at", UTCDateTime()),
    column("routing_key", String),
    column("features", String),
    column("output", String),
    column("latency_ms", Float),
)


def _migrate(url: str, revision: str, action: str = "upgrade") -> None:
    engine = create_store_engine(url)
    try:
        with engine.begin() as conn:
            cfg = _alembic_config()
            cfg.attributes["connection"] = conn
            getattr(command, action)(cfg, revision)
    finally:
        engine.dispose()


def _fill_0001(url: str) -> None:
    engine = create_store_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(OLD_DEPLOYMENTS),
                [
                    {
                        "name": "churn",
                        "model_name": "churn",
                        "model_version": 3,
                        "strategy": "canary",
                        "candidate_version": 4,
                        "weight": 0.1,
                        "key_column": "customer_id",
                        "revision": 7,
                        "updated_at": T0,
                    },
                    {
                        "name": "iris",
                        "model_name": "iris",
                        "model_version": 1,
                        "strategy": "basic",
                        "candidate_version": None,
                        "weight": 0.0,
                        "key_column": None,
                        "revision": 1,
                        "updated_at": T0,
                    },
                ],
            )
            conn.execute(
                insert(OLD_EVENTS),
                [
                    {
                        "deployment": "churn",
                        "action": "deploy",
                        "state": {"revision": 7},
                        "created_at": T0,
                    }
                ],
            )
            conn.execute(
                insert(OLD_PREDICTIONS),
                [
                    {
                        "id": f"p{i}",
                        "deployment": "churn",
                        "model_name": "churn",
                        "model_version": 3,
                        "created_at": T0,
                        "routing_key": str(i),
                        "features": "{}",
                        "output": "{}",
                        "latency_ms": 1.5,
                    }
                    for i in range(5)
                ],
            )
    finally:
        engine.dispose()


def test_upgrading_a_0001_store_keeps_its_rows(database_url: str):
    _migrate(database_url, "0001")
    _fill_0001(database_url)

    store = Store(database_url)  # migrates to the head on open
    try:
        churn = store.deployments.get("churn")
        assert churn is not None
        assert (churn.model_ref, churn.strategy, churn.weight) == ("churn:3", "canary", 0.1)
        assert churn.challenger_ref == "churn:4"
        assert (churn.key_column, churn.revision, churn.updated_at) == ("customer_id", 7, T0)
        assert (churn.steps, churn.step, churn.manual, churn.mirror) == ((), 0, False, 1.0)
        assert churn.log_extra == () and churn.previous_ref is None
        iris = store.deployments.get("iris")
        assert iris is not None and iris.challenger_ref is None

        [event] = store.deployments.history("churn")
        assert (event.action, event.actor, event.reason, event.state) == (
            "deploy",
            None,
            None,
            {"revision": 7},
        )
        with store.engine.connect() as conn:
            roles = conn.execute(select(predictions.c.id, predictions.c.role)).all()
        assert sorted(roles) == [(f"p{i}", "champion") for i in range(5)]

        # and the migrated store takes new saves
        saved = store.deployments.save(churn, "promote", actor="ana", reason="after 0002")
        assert saved.revision == 8
        assert store.deployments.history("churn")[-1].actor == "ana"
    finally:
        store.close()


def test_downgrading_to_0001_brings_back_the_candidate(database_url: str):
    _migrate(database_url, "0001")
    _fill_0001(database_url)
    _migrate(database_url, head_revision() or "head")
    _migrate(database_url, "0001", action="downgrade")

    engine = create_store_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(OLD_DEPLOYMENTS.c.name, OLD_DEPLOYMENTS.c.candidate_version).order_by(
                    OLD_DEPLOYMENTS.c.name
                )
            ).all()
            count = conn.execute(select(OLD_PREDICTIONS.c.id)).all()
    finally:
        engine.dispose()
    assert rows == [("churn", 4), ("iris", None)]
    assert len(count) == 5


def test_upgrading_a_0006_store_keeps_each_labels_upload_time_as_its_known_time(
    database_url: str,
):
    """Labels stored before 0007 knew no other time than their upload's: it becomes their
    known time, so their delay reads as it did."""
    _migrate(database_url, "0006")
    old_labels = table(
        "labels",
        column("prediction_id", String),
        column("deployment", String),
        column("label", String),
        column("predicted_at", UTCDateTime()),
        column("received_at", UTCDateTime()),
    )
    uploaded = T0.replace(day=28)
    engine = create_store_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(old_labels),
                [
                    {
                        "prediction_id": "p1",
                        "deployment": "churn",
                        "label": "1",
                        "predicted_at": T0,
                        "received_at": uploaded,
                    }
                ],
            )
    finally:
        engine.dispose()
    store = Store(database_url)  # migrates to the head on open
    try:
        stored = store.labels.get("p1")
        assert stored is not None
        assert (stored["received_at"], stored["known_at"]) == (uploaded, uploaded)
    finally:
        store.close()


def test_downgrading_past_0008_gives_a_batchs_rows_their_features_back_inline(
    database_url: str,
):
    """0008 stores a multi-row entry's features once; going back to 0007 writes each row's
    own features into it again, so nothing logged is lost by a downgrade."""
    import orjson

    from relevo.store.predictions import Inputs

    store = Store(database_url)  # migrates to the head on open
    try:
        columns = {"tenure_months": [3, 4, 5], "region": ["north", "south", None]}
        inputs = Inputs("e" * 32, "churn", T0, orjson.dumps(columns).decode())
        rows = [
            (f"{i:032x}", "churn", "churn", 1, T0, None, "", "{}", 1.0, "champion", inputs, i)
            for i in range(3)
        ]
        store.predictions.insert_many(rows)
        # an entry whose rows were stored inline first (an older writer), then replayed with
        # its inputs: the inputs are stored, the rows skipped; nothing points at them
        earlier = Inputs("f" * 32, "churn", T0, orjson.dumps({"tenure_months": [9]}).decode())
        inline_row = ("f" * 32, "churn", "churn", 1, T0, None, '{"tenure_months":9}', "{}", 1.0,
                      "champion")  # fmt: skip
        store.predictions.insert_many([inline_row])
        store.predictions.insert_many([(*inline_row[:6], "", *inline_row[7:], earlier, 0)])
    finally:
        store.close()
    _migrate(database_url, "0007", action="downgrade")
    engine = create_store_engine(database_url)
    try:
        with engine.connect() as conn:
            back = conn.exec_driver_sql("SELECT id, features FROM predictions ORDER BY id").all()
    finally:
        engine.dispose()
    assert [(i, orjson.loads(f)) for i, f in back] == [
        (f"{0:032x}", {"tenure_months": 3, "region": "north"}),
        (f"{1:032x}", {"tenure_months": 4, "region": "south"}),
        (f"{2:032x}", {"tenure_months": 5, "region": None}),
        ("f" * 32, {"tenure_months": 9}),
    ]
