"""Ground truth in the store: labels staged, joined to the prediction log and upserted in one
transaction; a deployment's feedback settings (the joined reads live in `store.joined`).

A file of labels is staged batch by batch into a temporary table inside one transaction, then
one INSERT ... SELECT joins it to the log (by prediction id, within the deployment) and upserts
it: a failed or refused file leaves nothing behind, and the join runs in the database. Each label
keeps when it was uploaded (`received_at`) and when its truth became known (`known_at`: the
label's own time when it carries one, else the upload's), which the label delay runs to.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection, Engine

from relevo.store.joined import JoinedReader
from relevo.store.tables import deployments, labels, predictions

_STAGE = "labels_incoming"
_SQLITE_ROWS = 2000  # rows per multi-row INSERT (2-3 variables each: under SQLite's limit)
_LARGE = 100_000  # labels from which an upload gets more memory for its joins and sort
_WORK_MEM = "256MB"


@dataclass(frozen=True)
class Upserted:
    """What an upload did: labels stored (new or replacing), replaced, and ids not in the log."""

    accepted: int
    replaced: int
    unknown: list[str]


class LabelSession:
    """Labels staged in one open transaction; `commit` joins and stores them all at once."""

    def __init__(self, conn: Connection, postgres: bool) -> None:
        self.conn = conn
        self.postgres = postgres
        self.staged = 0
        #: ids staged so far, to tell a plain upload (each id once: one INSERT ... SELECT)
        #: from one that repeats ids (collapsed first, the last value winning)
        self._seen: set[str] = set()
        self.repeats = 0
        #: whether the ids came in increasing order so far (then the log's join already
        #: yields them in the labels key's order; otherwise the insert sorts them first)
        self.ordered = True
        self._last = ""

    def stage(
        self, ids: Sequence[str], texts: Sequence[str], known: Sequence[str] | None = None
    ) -> None:
        """Stage labels: `ids[i]` labelled `texts[i]` (JSON text), its truth known at
        `known[i]` (UTC text, "YYYY-MM-DD HH:MM:SS.ffffff+00:00", as SQLite keeps a time and
        PostgreSQL's COPY reads one; without `known`, at the upload)."""
        if not ids:
            return
        columns = [ids, texts] if known is None else [ids, texts, known]
        names = "prediction_id, label" if known is None else "prediction_id, label, known_at"
        seen = self._seen
        before = len(seen)
        seen.update(ids)
        self.repeats += len(ids) - (len(seen) - before)
        if self.ordered:
            self.ordered = self._last < ids[0] and all(map(operator.lt, ids, ids[1:]))
            self._last = ids[-1]
        cur = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            if self.postgres:
                with cur.copy(f"COPY {_STAGE} ({names}) FROM STDIN") as copy:
                    block = _copy_text(columns)
                    if block is not None:
                        copy.write(block)
                    else:  # a tab, newline or backslash somewhere: psycopg escapes each row
                        for row in zip(*columns, strict=True):
                            copy.write_row(row)
            else:
                marks = "(" + ",".join("?" * len(columns)) + ")"
                for i in range(0, len(ids), _SQLITE_ROWS):
                    part = list(zip(*(c[i : i + _SQLITE_ROWS] for c in columns), strict=True))
                    values = ",".join([marks] * len(part))
                    cur.execute(
                        f"INSERT INTO {_STAGE} ({names}) VALUES {values}",
                        [v for row in part for v in row],
                    )
        finally:
            cur.close()
        self.staged += len(ids)

    def commit(self, deployment: str, received_at: datetime) -> Upserted:
        """Join the staged labels to `deployment`'s log and upsert them; the last value sent
        for an id wins, every sending counts as a revision."""
        c = self.conn
        if self.postgres:
            c.execute(text(f"ANALYZE {_STAGE}"))  # a temp table has no statistics: plan on them
            if self.staged >= _LARGE:
                # a large upload's joins and sort in memory, for this transaction only
                c.execute(text(f"SET LOCAL work_mem = '{_WORK_MEM}'"))
        else:
            # SQLite (WAL): a transaction that reads the store and then writes fails at once
            # ("database is locked") if another connection wrote in between, whatever the busy
            # timeout. Staging touched only the temporary database: end that, then take the
            # write lock first (waiting for it), so the join and upsert below cannot lose it.
            raw = c.connection.driver_connection
            assert raw is not None
            raw.commit()
            raw.execute("BEGIN IMMEDIATE")
        source = _STAGE
        repeats = 0
        if self.repeats:  # rare: collapse repeated ids first, the last value sent winning
            source = f"{_STAGE}_last"
            c.execute(
                text(
                    f"CREATE TEMP TABLE {source} AS SELECT s.prediction_id, i.label, "
                    "i.known_at, s.sent FROM (SELECT prediction_id, COUNT(*) AS sent, "
                    f"MAX(seq) AS seq FROM {_STAGE} GROUP BY prediction_id) s "
                    f"JOIN {_STAGE} i ON i.seq = s.seq"
                )
            )
            found = c.execute(
                text(
                    f"SELECT COALESCE(SUM(s.sent - 1), 0) FROM {source} s JOIN predictions p "
                    "ON p.id = s.prediction_id AND p.deployment = :d"
                ),
                {"d": deployment},
            ).scalar()
            repeats = int(found or 0)
        received = labels.c.received_at.type.bind_processor(c.dialect)
        when = received(received_at) if received is not None else received_at
        sent = "s.sent" if self.repeats else "1"
        if self.postgres:
            accepted, added = self._upsert_postgres(source, sent, deployment, when)
        else:
            count = select(func.count()).where(labels.c.deployment == deployment)
            before = int(c.execute(count).scalar() or 0)
            result = c.execute(
                text(
                    "INSERT INTO labels (prediction_id, deployment, label, predicted_at, "
                    "received_at, known_at, revisions) "
                    "SELECT s.prediction_id, p.deployment, s.label, p.created_at, :now, "
                    f"COALESCE(s.known_at, :now), {sent} "
                    f"FROM {source} s JOIN predictions p "
                    "ON p.id = s.prediction_id AND p.deployment = :d "
                    "WHERE TRUE "  # SQLite needs a WHERE before ON CONFLICT after a SELECT
                    "ON CONFLICT (prediction_id) DO UPDATE SET label = excluded.label, "
                    "received_at = excluded.received_at, known_at = excluded.known_at, "
                    "revisions = labels.revisions + excluded.revisions"
                ),
                {"d": deployment, "now": when},
            )
            accepted = int(result.rowcount or 0)
            added = int(c.execute(count).scalar() or 0) - before
        unknown: list[str] = []
        if accepted < len(self._seen):  # only then is any id missing from the log
            unknown = [
                r[0]
                for r in c.execute(
                    text(
                        f"SELECT s.prediction_id FROM {source} s WHERE NOT EXISTS (SELECT 1 "
                        "FROM predictions p WHERE p.id = s.prediction_id AND p.deployment = :d)"
                        " ORDER BY s.prediction_id"
                    ),
                    {"d": deployment},
                )
            ]
            unknown = list(dict.fromkeys(unknown))
        return Upserted(accepted + int(repeats or 0), accepted - added + int(repeats or 0), unknown)

    def _upsert_postgres(
        self, source: str, sent: str, deployment: str, when: Any
    ) -> tuple[int, int]:
        """(labels stored, of which new): an UPDATE of the labels that exist, then a plain
        INSERT of the rest (a third faster than INSERT ... ON CONFLICT, whose speculative
        insertion costs per row). The lock keeps a concurrent upload from inserting the same
        ids in between, so when the UPDATE found none of the ids, the INSERT need not look
        for them again; ids in the key's order make the key's index grow at its end."""
        c = self.conn
        c.execute(text("LOCK TABLE labels IN SHARE ROW EXCLUSIVE MODE"))
        updated = c.execute(
            text(
                "UPDATE labels l SET label = s.label, received_at = :now, "
                "known_at = COALESCE(s.known_at, :now), "
                f"revisions = l.revisions + {sent} FROM {source} s "
                "WHERE l.prediction_id = s.prediction_id AND l.deployment = :d"
            ),
            {"d": deployment, "now": when},
        ).rowcount
        missing = (
            " AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.prediction_id = s.prediction_id)"
            if updated
            else ""
        )
        order = "" if self.ordered else ' ORDER BY s.prediction_id COLLATE "C"'
        inserted = c.execute(
            text(
                "INSERT INTO labels (prediction_id, deployment, label, predicted_at, "
                "received_at, known_at, revisions) "
                "SELECT s.prediction_id, p.deployment, s.label, p.created_at, :now, "
                f"COALESCE(s.known_at, :now), {sent} "
                f"FROM {source} s JOIN predictions p "
                f"ON p.id = s.prediction_id AND p.deployment = :d WHERE TRUE{missing}{order}"
            ),
            {"d": deployment, "now": when},
        ).rowcount
        return int(updated or 0) + int(inserted or 0), int(inserted or 0)


def _copy_text(columns: Sequence[Sequence[str]]) -> bytes | None:
    """Columns of text in COPY's text format, built in one pass; None when a value holds a
    tab, a line break or a backslash (which that format escapes)."""
    n = len(columns[0])
    block = "\n".join(map("\t".join, zip(*columns, strict=True))) + "\n"
    if block.count("\t") != n * (len(columns) - 1) or block.count("\n") != n:
        return None
    if "\\" in block or "\r" in block:
        return None
    return block.encode()


class LabelRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        reader = JoinedReader(engine)
        #: the log joined to its labels, for performance reports (`relevo.store.joined`)
        self.joined = reader.joined
        self.scores = reader.scores

    @contextmanager
    def session(self) -> Iterator[LabelSession]:
        """One transaction: stage labels, then `commit`; an exception stores nothing."""
        with self.engine.begin() as conn:
            # the order of sending (for repeated ids); SQLite's is the rowid, free
            seq = "BIGSERIAL" if self._postgres else "INTEGER PRIMARY KEY"
            when = "TIMESTAMPTZ" if self._postgres else "TEXT"
            conn.execute(text(f"DROP TABLE IF EXISTS {_STAGE}_last"))
            conn.execute(text(f"DROP TABLE IF EXISTS {_STAGE}"))
            conn.execute(
                text(
                    f"CREATE TEMP TABLE {_STAGE} (seq {seq}, prediction_id VARCHAR(32) "
                    f"NOT NULL, label TEXT NOT NULL, known_at {when})"
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

    def for_ids(self, ids: Sequence[str]) -> dict[str, tuple[str, datetime, datetime]]:
        """id -> (label JSON text, received_at, known_at) of those of `ids` that have a
        label."""
        out: dict[str, tuple[str, datetime, datetime]] = {}
        l = labels.c  # noqa: E741
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 1000):
                query = select(l.prediction_id, l.label, l.received_at, l.known_at).where(
                    l.prediction_id.in_(ids[i : i + 1000])
                )
                out.update({r[0]: (r[1], r[2], r[3] or r[2]) for r in conn.execute(query)})
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
