"""The schema: one UTC-aware timestamp type everywhere, and tables that match the migrations."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import DateTime, insert, select
from sqlalchemy.exc import StatementError

from relevo.routing.deployment import Deployment
from relevo.store.tables import UTCDateTime, deployment_events, deployments, metadata


def test_every_timestamp_column_is_utc_aware():
    timestamps = [
        c for t in metadata.tables.values() for c in t.columns if c.type._type_affinity is DateTime
    ]
    assert {f"{c.table.name}.{c.name}" for c in timestamps} == {
        "model_versions.created_at",
        "profiles.created_at",
        "deployments.updated_at",
        "deployments.step_started_at",
        "deployments.promoted_at",
        "leases.expires_at",
        "leases.acquired_at",
        "deployment_events.created_at",
        "predictions.created_at",
        "shadow_predictions.created_at",
        "prediction_inputs.created_at",
        "profile_buckets.start",
        "profile_buckets.updated_at",
        "alerts.started_at",
        "alerts.updated_at",
        "alerts.resolved_at",
        "alert_observations.evaluated_at",
        "alert_silences.until",
        "alert_silences.created_at",
        "labels.predicted_at",
        "labels.received_at",
        "labels.known_at",
    }
    assert all(isinstance(c.type, UTCDateTime) for c in timestamps)


def test_the_migrated_schema_matches_the_tables(store):
    """UTCDateTime changes how values travel, not the schema: autogenerate sees no change."""
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_a_naive_timestamp_is_refused(store):
    row = {"deployment": "churn", "action": "deploy", "state": {}}
    with store.engine.begin() as conn:
        conn.execute(insert(deployment_events), {**row, "created_at": datetime.now(UTC)})
        with pytest.raises(StatementError, match="naive datetime"):
            conn.execute(insert(deployment_events), {**row, "created_at": datetime.now()})


def test_timestamps_read_back_are_utc(store):
    saved = store.deployments.save(Deployment("churn", "churn", 1, datetime.now(UTC)), "deploy")
    with store.engine.connect() as conn:
        updated = conn.execute(select(deployments.c.updated_at)).scalar_one()
    assert updated == saved.updated_at
    assert updated.tzinfo == UTC
