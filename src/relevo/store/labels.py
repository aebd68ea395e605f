"""Ground truth in the store: labels staged, joined to the prediction log and upserted in one
transaction; the joined rows read back for performance; a deployment's feedback settings.

A file of labels is staged batch by batch into a temporary table inside one transaction, then
one INSERT ... SELECT joins it to the log (by prediction id, within the deployment) and upserts
it: a failed or refused file leaves nothing behind, and the join runs in the database.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import and_, func, select, text
from sqlalchemy.engine import Connection, Engine

from relevo.store.tables import deployments, labels, predictions, shadow_predictions

#: one staged label: (prediction id, label as JSON text, times it was sent in this upload)
Staged = tuple[str, str, int]

_STAGE = "labels_incoming"
_SQLITE_ROWS = 2000  # rows per multi-row INSERT (3 variables each: under SQLite's limit)


@dataclass(frozen=True)
class Upserted:
    """What an upload did: labels stored (new or replacing), replaced, and ids not in the log."""

    accepted: int
    replaced: int
    unknown: list[str]


@dataclass(frozen=True)
class JoinedRows:
    """Logged predictions of a time range with their labels (None where none arrived), as
    parallel lists: one entry per prediction (shadow outputs have role "shadow")."""

    ids: list[str]
    model: list[str]
    role: list[str]
    created_at: list[datetime]
    output: list[str | None]
    label: list[str | None]
    received_at: list[datetime | None]
    features: list[str] | None


class LabelSession:
    """Labels staged in one open transaction; `commit` joins and stores them all at once."""

    def __init__(self, conn: Connection, postgres: bool) -> None:
        self.conn = conn
        self.postgres = postgres
        self.staged = 0

    def stage(self, rows: Sequence[Staged]) -> None:
        if not rows:
            return
        cur = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            if self.postgres:
                with cur.copy(f"COPY {_STAGE} (prediction_id, label, sent) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                for i in range(0, len(rows), _SQLITE_ROWS):
                    part = rows[i : i + _SQLITE_ROWS]
                    values = ",".join(["(?,?,?)"] * len(part))
                    cur.execute(
                        f"INSERT INTO {_STAGE} (prediction_id, label, sent) VALUES {values}",
                        [v for row in part for v in row],
                    )
        finally:
            cur.close()
        self.staged += len(rows)

    def commit(self, deployment: str, received_at: datetime) -> Upserted:
        """Join the staged labels to `deployment`'s log and upsert them; the last value sent
        for an id wins, every sending counts as a revision."""
        c = self.conn
        # the last row staged for an id wins: collapse repeats before the join
        c.execute(
            text(
                f"CREATE TEMP TABLE {_STAGE}_last AS SELECT prediction_id, "
                f"SUM(sent) AS sent, MAX(seq) AS seq FROM {_STAGE} GROUP BY prediction_id"
            )
        )
        unknown = [
            r[0]
            for r in c.execute(
                text(
                    f"SELECT s.prediction_id FROM {_STAGE}_last s WHERE NOT EXISTS (SELECT 1 "
                    "FROM predictions p WHERE p.id = s.prediction_id AND p.deployment = :d) "
                    "ORDER BY s.prediction_id"
                ),
                {"d": deployment},
            )
        ]
        existing = c.execute(
            text(
                f"SELECT COUNT(*) FROM {_STAGE}_last s JOIN labels l "
                "ON l.prediction_id = s.prediction_id AND l.deployment = :d"
            ),
            {"d": deployment},
        ).scalar()
        repeats = c.execute(text(f"SELECT COALESCE(SUM(sent - 1), 0) FROM {_STAGE}_last")).scalar()
        received = labels.c.received_at.type.bind_processor(c.dialect)
        when = received(received_at) if received is not None else received_at
        result = c.execute(
            text(
                "INSERT INTO labels (prediction_id, deployment, label, predicted_at, "
                "received_at, revisions) "
                f"SELECT s.prediction_id, p.deployment, i.label, p.created_at, :now, s.sent "
                f"FROM {_STAGE}_last s JOIN {_STAGE} i ON i.seq = s.seq "
                "JOIN predictions p ON p.id = s.prediction_id AND p.deployment = :d "
                "WHERE TRUE "  # SQLite needs a WHERE before ON CONFLICT after a SELECT
                "ON CONFLICT (prediction_id) DO UPDATE SET label = excluded.label, "
                "received_at = excluded.received_at, "
                "revisions = labels.revisions + excluded.revisions"
            ),
            {"d": deployment, "now": when},
        )
        accepted = int(result.rowcount or 0)
        return Upserted(accepted, int(existing or 0) + int(repeats or 0), unknown)


class LabelRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    @contextmanager
    def session(self) -> Iterator[LabelSession]:
        """One transaction: stage labels, then `commit`; an exception stores nothing."""
        with self.engine.begin() as conn:
            seq = "BIGSERIAL PRIMARY KEY" if self._postgres else "INTEGER PRIMARY KEY"
            conn.execute(text(f"DROP TABLE IF EXISTS {_STAGE}_last"))
            conn.execute(text(f"DROP TABLE IF EXISTS {_STAGE}"))
            conn.execute(
                text(
                    f"CREATE TEMP TABLE {_STAGE} (seq {seq}, prediction_id VARCHAR(32) "
                    "NOT NULL, label TEXT NOT NULL, sent INTEGER)"
                )
            )
            try:
                yield LabelSession(conn, self._postgres)
            finally:
                conn.execute(text(f"DROP TABLE IF EXISTS {_STAGE}_last"))
                conn.execute(text(f"DROP TABLE IF EXISTS {_STAGE}"))

    def count(self, deployment: str) -> int:
        query = select(func.count()).where(labels.c.deployment == deployment)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def get(self, prediction_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(labels).where(labels.c.prediction_id == prediction_id)
            ).mappings()
            first = row.first()
        return dict(first) if first is not None else None

    def for_ids(self, ids: Sequence[str]) -> dict[str, tuple[str, datetime]]:
        """id -> (label JSON text, received_at) of those of `ids` that have a label."""
        out: dict[str, tuple[str, datetime]] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 1000):
                query = select(labels.c.prediction_id, labels.c.label, labels.c.received_at).where(
                    labels.c.prediction_id.in_(ids[i : i + 1000])
                )
                out.update({r[0]: (r[1], r[2]) for r in conn.execute(query)})
        return out

    def keyed(
        self, deployment: str, keys: Sequence[str], since: datetime, until: datetime
    ) -> Iterator[tuple[str, str, datetime]]:
        """(id, routing key, created_at) of the predictions of `deployment` for `keys` made
        in [since, until], for joining labels by key and time."""
        p = predictions.c
        with self.engine.connect() as conn:
            for i in range(0, len(keys), 1000):
                query = select(p.id, p.routing_key, p.created_at).where(
                    p.deployment == deployment,
                    p.routing_key.in_(keys[i : i + 1000]),
                    p.created_at >= since,
                    p.created_at <= until,
                )
                yield from ((r[0], r[1], r[2]) for r in conn.execute(query))

    def joined(
        self,
        deployment: str,
        since: datetime | None,
        until: datetime,
        *,
        features: bool = False,
    ) -> JoinedRows:
        """Every prediction (and shadow output) of `deployment` made in [since, until), with
        its label where one arrived."""
        p, s, lab = predictions.c, shadow_predictions.c, labels.c
        cols: list[Any] = [p.id, p.model_name, p.model_version, p.role, p.created_at, p.output]
        cols += [lab.label, lab.received_at]
        if features:
            cols.append(p.features)
        cond = [p.deployment == deployment, p.created_at < until]
        if since is not None:
            cond.append(p.created_at >= since)
        main = (
            select(*cols)
            .select_from(predictions.outerjoin(labels, lab.prediction_id == p.id))
            .where(and_(*cond))
        )
        scols: list[Any] = [s.id, s.model_name, s.model_version, s.created_at, s.output]
        scols += [lab.label, lab.received_at]
        if features:
            scols.append(p.features)
        scond = [s.deployment == deployment, s.created_at < until]
        if since is not None:
            scond.append(s.created_at >= since)
        base = shadow_predictions.outerjoin(labels, lab.prediction_id == s.id)
        if features:
            base = base.join(predictions, p.id == s.id)
        shadow = select(*scols).select_from(base).where(and_(*scond))
        out = JoinedRows([], [], [], [], [], [], [], [] if features else None)
        with self.engine.connect() as conn:
            for r in conn.execute(main):
                out.ids.append(r[0])
                out.model.append(f"{r[1]}:{r[2]}")
                out.role.append("champion" if r[3] == "fallback" else r[3])
                out.created_at.append(r[4])
                out.output.append(r[5])
                out.label.append(r[6])
                out.received_at.append(r[7])
                if out.features is not None:
                    out.features.append(r[8])
            for r in conn.execute(shadow):
                out.ids.append(r[0])
                out.model.append(f"{r[1]}:{r[2]}")
                out.role.append("shadow")
                out.created_at.append(r[3])
                out.output.append(r[4])
                out.label.append(r[5])
                out.received_at.append(r[6])
                if out.features is not None:
                    out.features.append(r[7])
        return out

    def feedback_settings(self, deployment: str) -> dict[str, Any]:
        """The "feedback" section of the deployment's monitoring settings ({} if none)."""
        with self.engine.connect() as conn:
            raw = conn.execute(
                select(deployments.c.monitoring).where(deployments.c.name == deployment)
            ).scalar()
        if isinstance(raw, str | bytes):
            raw = orjson.loads(raw)
        section = raw.get("feedback") if isinstance(raw, dict) else None
        return section if isinstance(section, dict) else {}
