"""The relational schema. Migrations in `migrations/versions` create and evolve it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that goes in aware and comes out aware, in UTC, on every backend.

    SQLite has no time zones: it stores the UTC wall time and reads it back naive; PostgreSQL
    reads `timestamptz` back in the session's zone. Naive input is refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is UTC:  # the common case, kept cheap for bulk writes
            return value
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"a naive datetime cannot be stored: {value!r} (give it a tzinfo)")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is UTC:
            return value
        if value.tzinfo is None:  # SQLite
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)  # PostgreSQL, in the session's time zone


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("flavor", String(40), nullable=False),
    Column("task", String(20), nullable=False),
    Column("classes", JSON, nullable=True),
    Column("artifact_sha256", String(64), nullable=False),
    Column("artifact_path", String(1000), nullable=False),
    Column("artifact_size", BigInteger, nullable=False),
    Column("signature", JSON, nullable=False),
    Column("target", String(200), nullable=True),
    Column("description", Text, nullable=False, default=""),
    Column("tags", JSON, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("lineage", JSON, nullable=False),
    Column("library_versions", JSON, nullable=False),
    Column("flavor_options", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("name", "version", name="uq_model_versions_name_version"),
)

profiles = Table(
    "profiles",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(200), nullable=False),
    Column("model_version", Integer, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("model_name", "model_version", "kind", name="uq_profiles_model_kind"),
)

deployments = Table(
    "deployments",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("model_name", String(200), nullable=False),
    Column("model_version", Integer, nullable=False),
    Column("strategy", String(20), nullable=False),
    Column("weight", Float, nullable=False),
    Column("key_column", String(200), nullable=True),
    Column("revision", Integer, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    # added by migration 0002 (issue 14: challenger, rollout plan, rollback, log privacy)
    Column("challenger_name", String(200), nullable=True),
    Column("challenger_version", Integer, nullable=True),
    Column("steps", JSON, nullable=True),
    Column("step", Integer, nullable=False, server_default=text("0")),
    Column("min_step_rows", Integer, nullable=False, server_default=text("500")),
    Column("min_step_seconds", Float, nullable=False, server_default=text("300")),
    Column("step_started_at", UTCDateTime(), nullable=True),
    Column("manual", Boolean, nullable=False, server_default=false()),
    Column("mirror", Float, nullable=False, server_default=text("1")),
    Column("previous_name", String(200), nullable=True),
    Column("previous_version", Integer, nullable=True),
    Column("promoted_at", UTCDateTime(), nullable=True),
    Column("bake_seconds", Float, nullable=False, server_default=text("3600")),
    Column("log_extra", JSON, nullable=True),
    # added by migration 0005 (issue 15): per-deployment monitoring settings (sections "drift",
    # "alerts", "feedback"), validated by their owners; null means the defaults
    Column("monitoring", JSON, nullable=True),
)

#: the audit trail: one row per change, with who made it and why, and the state it produced
deployment_events = Table(
    "deployment_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment", String(200), nullable=False, index=True),
    Column("action", String(40), nullable=False),
    Column("state", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("actor", String(200), nullable=True),
    Column("reason", Text, nullable=True),
)

#: short-lived exclusive roles across replicas (one rollout evaluator at a time)
leases = Table(
    "leases",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("acquired_at", UTCDateTime(), nullable=False),
)

predictions = Table(
    "predictions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("deployment", String(200), nullable=False),
    Column("model_name", String(200), nullable=False),
    Column("model_version", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("routing_key", String(200), nullable=True),
    Column("features", Text, nullable=False),
    Column("output", Text, nullable=False),
    Column("latency_ms", Float, nullable=False),
    # added by migration 0002: which role the answering model played (champion, challenger,
    # shadow); rows logged before it answered as the champion
    Column("role", String(20), nullable=False, server_default="champion"),
    # added by migration 0008: a row of a multi-row entry (a micro-batch, a batch-scoring
    # chunk) stored by the log's writer process keeps its features once for the whole entry,
    # in `prediction_inputs` under this key, at this row; its `features` text is then empty
    Column("inputs", String(32), nullable=True),
    Column("inputs_row", Integer, nullable=True),
    # added by migration 0009: where the row was answered when not by a request: "batch" for
    # a batch run's rows (`relevo predict`), whose latency_ms is their chunk's model call and
    # no request's; NULL for a request's row (and every row stored before)
    Column("source", String(20), nullable=True),
    # added by migration 0010: on a `fallback` row (the champion answered a row its challenger
    # failed on), the challenger that failed, as "name:version"; NULL on every other row (and
    # on every row stored before, whose challenger is not known any more)
    Column("challenger", String(220), nullable=True),
    Index("ix_predictions_deployment_created", "deployment", "created_at"),
)

#: added by migration 0008: the features of one multi-row log entry, column by column (a JSON
#: object of arrays), stored once instead of one JSON object per row; keyed by the entry's
#: first prediction id. Read back row by row (`relevo.store.predictions`).
prediction_inputs = Table(
    "prediction_inputs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("deployment", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("features", Text, nullable=False),
    Index("ix_prediction_inputs_deployment_created", "deployment", "created_at"),
)


#: added by migration 0003: a shadow challenger's output (or its error) for a prediction, under
#: the prediction's own id (the champion's answer is the `predictions` row of that id)
shadow_predictions = Table(
    "shadow_predictions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("deployment", String(200), nullable=False),
    Column("model_name", String(200), nullable=False),
    Column("model_version", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("output", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("latency_ms", Float, nullable=False),
    Index("ix_shadow_predictions_deployment_created", "deployment", "created_at"),
)


# ----------------------------------------------------------------- monitoring (migration 0004)
#: production profiles (issue 15): one row per deployment, model, role, time bucket and
#: replica; a window's profile is the merge of its rows' payloads, never a scan of predictions
profile_buckets = Table(
    "profile_buckets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment", String(200), nullable=False),
    Column("model_name", String(200), nullable=False),
    Column("model_version", Integer, nullable=False),
    Column("role", String(20), nullable=False),
    Column("start", UTCDateTime(), nullable=False),
    Column("seconds", Integer, nullable=False),
    Column("replica", String(200), nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("payload", Text, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint(
        "deployment",
        "model_name",
        "model_version",
        "role",
        "start",
        "replica",
        name="uq_profile_buckets_key",
    ),
    Index("ix_profile_buckets_deployment_start", "deployment", "start"),
)


# --------------------------------------------------------------------- alerts (migration 0005)
#: alert states (issue 15): one row per incident of a rule on a deployment and subject
alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment", String(200), nullable=True),
    Column("rule", String(100), nullable=False),
    Column("subject", String(200), nullable=False, server_default=""),
    Column("state", String(20), nullable=False),
    Column("severity", String(20), nullable=False),
    Column("value", Float, nullable=True),
    Column("threshold", Float, nullable=True),
    Column("message", Text, nullable=False),
    Column("incident", String(64), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("resolved_at", UTCDateTime(), nullable=True),
    #: whether a notification covered this alert's firing (the incident's resolution is
    #: notified only when its firing was)
    Column("notified", Boolean, nullable=False, server_default=false()),
    Index("ix_alerts_deployment_state", "deployment", "state"),
)

#: the latest observation of every (deployment, rule, subject) the evaluator judged: the
#: "N of M evaluations" persistence (`recent`, newest last, "1" firing) and the last value,
#: which the Prometheus gauges (drift scores, alert states) are read from
alert_observations = Table(
    "alert_observations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment", String(200), nullable=False, server_default=""),
    Column("rule", String(100), nullable=False),
    Column("subject", String(200), nullable=False, server_default=""),
    Column("recent", String(64), nullable=False, server_default=""),
    Column("firing", Boolean, nullable=False, server_default=false()),
    Column("value", Float, nullable=True),
    Column("threshold", Float, nullable=True),
    Column("severity", String(20), nullable=False),
    Column("message", Text, nullable=False),
    Column("evaluated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("deployment", "rule", "subject", name="uq_alert_observations_key"),
)

#: silences: alerts matching them are kept but not notified until `until`
alert_silences = Table(
    "alert_silences",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment", String(200), nullable=True),
    Column("rule", String(100), nullable=True),
    Column("subject", String(200), nullable=True),
    Column("until", UTCDateTime(), nullable=False),
    Column("reason", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
)


# ------------------------------------------------------------------- feedback (migration 0006)
#: ground truth (issue 16): the label of a logged prediction, by its id
labels = Table(
    "labels",
    metadata,
    Column("prediction_id", String(32), primary_key=True),
    Column("deployment", String(200), nullable=False),
    Column("label", Text, nullable=False),
    Column("predicted_at", UTCDateTime(), nullable=False),
    #: when the upload arrived
    Column("received_at", UTCDateTime(), nullable=False),
    #: when the truth became known (migration 0007): the label's own time when it carries one
    #: (labels by key and time), else the upload's; the label delay runs to it
    Column("known_at", UTCDateTime(), nullable=True),
    Column("revisions", Integer, nullable=False, server_default=text("1")),
    # no index beyond the key: labels are read through their predictions (by id), and a
    # second index would slow the bulk upsert of a large file
)
