"""The prediction log joined to its labels, read for performance reports: every logged row
(champion, challenger, shadow) of a time range with its label where one arrived.

Read through the driver, past SQLAlchemy's per-row type processing, and for binary classifiers
and regressors reduced to numbers by the database itself (the logged JSON and the times parsed
in SQL): a million rows arrive as a few float arrays, not as text for Python to parse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from relevo.store.predictions import inline_features
from relevo.store.tables import labels

#: when a label's truth became known (labels stored before migration 0007 have only their
#: upload's time)
KNOWN = "COALESCE(l.known_at, l.received_at)"


@dataclass(frozen=True)
class JoinedRows:
    """Logged predictions of a time range with their labels (None where none arrived), as
    parallel lists: one entry per prediction (shadow outputs have role "shadow")."""

    ids: list[str]
    model: list[str]
    role: list[str]
    #: prediction time, Unix seconds
    created_s: np.ndarray
    output: list[str | None]
    label: list[str | None]
    #: when the label's truth became known, Unix seconds (NaN without a label)
    known_s: np.ndarray
    features: list[str] | None


class JoinedReader:
    """Reads of the log joined to the labels (`store.labels.joined`, `store.labels.scores`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    def joined(
        self,
        deployment: str,
        since: datetime | None,
        until: datetime,
        *,
        features: bool = False,
    ) -> JoinedRows:
        """Every prediction (and shadow output) of `deployment` made in [since, until), with
        its label where one arrived.

        Read through the driver, past SQLAlchemy's per-row type processing: times come back
        as SQLite text or PostgreSQL datetimes and are converted a column at a time (a
        million rows in about a second instead of three)."""
        mark = "%s" if self._postgres else "?"
        bind = labels.c.received_at.type.bind_processor(self.engine.dialect)

        def bound(when: datetime) -> Any:
            return bind(when) if bind is not None else when

        feats = ", p.features, p.inputs, p.inputs_row" if features else ""
        where = f"deployment = {mark} AND created_at < {mark}"
        params: list[Any] = [deployment, bound(until)]
        if since is not None:
            where += f" AND created_at >= {mark}"
            params.append(bound(since))

        def on(table: str) -> str:
            return where.replace("created_at", f"{table}.created_at").replace(
                "deployment =", f"{table}.deployment ="
            )

        main = (
            "SELECT p.id, p.model_name, p.model_version, p.role, p.created_at, p.output, "
            f"l.label, {KNOWN}{feats} FROM predictions p LEFT JOIN labels l "
            f"ON l.prediction_id = p.id WHERE {on('p')}"
        )
        shadow = (
            "SELECT s.id, s.model_name, s.model_version, 'shadow', s.created_at, s.output, "
            f"l.label, {KNOWN}{feats} FROM shadow_predictions s "
            + ("JOIN predictions p ON p.id = s.id " if features else "")
            + "LEFT JOIN labels l ON l.prediction_id = s.id WHERE "
            + on("s")
        )
        rows: list[Any] = []
        with self.engine.connect() as conn:
            for sql in (main, shadow):
                result = conn.exec_driver_sql(sql, tuple(params))
                rows += result.cursor.fetchall()
                result.close()
            cols: list[tuple[Any, ...]] = (
                list(zip(*rows, strict=True)) if rows else [()] * (11 if features else 8)
            )
            if features:  # each row's features inline (a batch's are stored once)
                cols[8] = tuple(inline_features(conn, cols[8], cols[9], cols[10]))
        return JoinedRows(
            ids=list(cols[0]),
            model=[f"{n}:{v}" for n, v in zip(cols[1], cols[2], strict=True)],
            role=["champion" if r == "fallback" else r for r in cols[3]],
            created_s=_seconds(cols[4]),
            output=list(cols[5]),
            label=list(cols[6]),
            known_s=_seconds(cols[7]),
            features=list(cols[8]) if features else None,
        )

    def scores(
        self, deployment: str, since: datetime | None, until: datetime, positive: str | None
    ) -> dict[str, np.ndarray]:
        """The joined rows of a binary classifier (`positive`: its positive class as JSON
        text) or a regressor (None), reduced in SQL to numbers: model, role,
        seconds (prediction time), known (when the label's truth became known, NaN without
        one), score (P(positive)
        or the value), predicted (answered positive, or the value), labelled, truth (truly
        positive, or the true value), as arrays. Rows whose model failed are left out.

        The database parses the logged JSON and the times (json_extract / json, strftime /
        date_part): a million rows arrive as numbers, not as text for Python to parse."""
        numbers = self._scores_one_pass(deployment, since, until, positive)
        if numbers is not None:
            return numbers
        # rows of a model or role relevo does not know: read group by group
        pg = self._postgres
        mark = "%s" if pg else "?"
        bind = labels.c.received_at.type.bind_processor(self.engine.dialect)

        def bound(when: datetime) -> Any:
            return bind(when) if bind is not None else when

        def epoch(col: str) -> str:
            if pg:
                return f"EXTRACT(EPOCH FROM {col})::float8"
            # SQLite keeps UTC text "YYYY-MM-DD HH:MM:SS[.ffffff]+00:00": whole seconds by
            # strftime, the fraction (characters 20-26) added exactly
            return (
                f"(CAST(strftime('%s', {col}) AS INTEGER) "
                f"+ COALESCE(CAST(substr({col}, 20, 7) AS REAL), 0))"
            )

        def field(col: str, key: str) -> str:
            return (
                f"({col}::jsonb ->> '{key}')::float8" if pg else f"json_extract({col}, '$.{key}')"
            )

        head: list[Any] = []  # the select list's parameters, then the filters'
        params: list[Any] = []
        if positive is not None:
            score = field("{t}.output", "probability")
            if pg:
                answered = f"(({{t}}.output::jsonb -> 'label') = CAST({mark} AS jsonb))"
            else:
                answered = f"(json_extract({{t}}.output, '$.label') = json_extract({mark}, '$'))"
            truth = f"(l.label = {mark})"
            head += [positive, positive]
        else:
            score = answered = field("{t}.output", "value")
            truth = "CAST(l.label AS DOUBLE PRECISION)" if pg else "CAST(l.label AS REAL)"
        where = (
            f"{{t}}.deployment = {mark} AND {{t}}.created_at < {mark} AND {{t}}.output IS NOT NULL"
        )
        params += [deployment, bound(until)]
        if since is not None:
            where += f" AND {{t}}.created_at >= {mark}"
            params.append(bound(since))
        columns = (
            f"{epoch('{t}.created_at')}, {epoch(KNOWN)}, {score}, {answered}, "
            f"l.label IS NOT NULL, {truth}"
        )
        group = f"{{t}}.model_name = {mark} AND {{t}}.model_version = {mark}"
        tables = [
            ("p", "predictions p", "p.role", f" AND p.role = {mark}"),
            ("s", "shadow_predictions s", "'shadow'", ""),
        ]
        names = ["seconds", "known", "score", "predicted", "labelled", "truth"]
        parts: list[np.ndarray] = []
        models: list[tuple[str, str, int]] = []
        with self.engine.connect() as conn:
            for t, table, role, by_role in tables:
                # a few groups (model, role), then each group's rows as numbers alone: one
                # float array per group, no Python string per row
                found = conn.exec_driver_sql(
                    f"SELECT DISTINCT {t}.model_name, {t}.model_version, {role} FROM {table} "
                    f"WHERE {where}".format(t=t),
                    tuple(params),
                ).all()
                for name, version, kind in found:
                    sql = (
                        f"SELECT {columns} FROM {table} LEFT JOIN labels l "
                        f"ON l.prediction_id = {t}.id WHERE {where} AND {group}{by_role}"
                    ).format(t=t)
                    extra = [name, version] + ([kind] if by_role else [])
                    result = conn.exec_driver_sql(sql, tuple(head + params + extra))
                    rows = result.cursor.fetchall()
                    result.close()
                    parts.append(np.array(rows, dtype=float).reshape(-1, len(names)))
                    label = "champion" if kind == "fallback" else str(kind)
                    models.append((f"{name}:{version}", label, len(rows)))
        data = np.concatenate(parts) if parts else np.zeros((0, len(names)))
        out = {name: data[:, k] for k, name in enumerate(names)}
        sizes = [n for _, _, n in models]
        # object arrays, not a DataFrame: pandas would turn a million strings into Arrow text
        out["model"] = np.repeat(np.array([m for m, _, _ in models], dtype=object), sizes)
        out["role"] = np.repeat(np.array([r for _, r, _ in models], dtype=object), sizes)
        out["labelled"] = out["labelled"] == 1.0
        return out

    def _scores_one_pass(
        self, deployment: str, since: datetime | None, until: datetime, positive: str | None
    ) -> dict[str, np.ndarray] | None:
        """`scores` in one statement over the log and the shadows. Each row's group (model
        version id, from a join to the small registry table, and role) and its yes/no facts
        are packed into one integer-valued number, so few numbers travel per row. PostgreSQL
        scans each output as `json` (cheaper than building a `jsonb`) and sends each column
        as one float8[] in binary (`array_send`): a million rows arrive as a few byte strings
        for NumPy, not as rows for Python. None when a row's model or role is not one relevo
        knows (the caller then reads group by group)."""
        pg = self._postgres
        binary = positive is not None
        bind = labels.c.received_at.type.bind_processor(self.engine.dialect)

        def bound(when: datetime) -> Any:
            return bind(when) if bind is not None else when

        params: dict[str, Any] = {"d": deployment, "until": bound(until)}
        if pg:
            text_of = "{t}.output::json ->> '%s'"
            # the answered label compared as JSON values, as before (1 and 1.0 are equal,
            # "1" is not): only the label's own few characters become jsonb
            answered = "(({t}.output::json -> 'label')::jsonb = %(pos)s::jsonb)::int"
            truth = "(l.label = %(label)s)::int"
            labelled = "(l.prediction_id IS NOT NULL)::int"
            number = "(({text})::float8)"
            real = "CAST(l.label AS DOUBLE PRECISION)"

            def mark(name: str) -> str:
                return f"%({name})s"

            def epoch(col: str) -> str:
                return f"date_part('epoch', {col})"
        else:
            text_of = "json_extract({t}.output, '$.%s')"
            answered = "(json_extract({t}.output, '$.label') = :pos)"
            truth = "(l.label = :label)"
            labelled = "(l.prediction_id IS NOT NULL)"
            number = "{text}"
            real = "CAST(l.label AS REAL)"

            def mark(name: str) -> str:
                return f":{name}"

            def epoch(col: str) -> str:
                # SQLite keeps UTC text "YYYY-MM-DD HH:MM:SS[.ffffff]+00:00": whole seconds
                # by strftime, the fraction (characters 20-26) added exactly
                return (
                    f"(CAST(strftime('%s', {col}) AS INTEGER) "
                    f"+ COALESCE(CAST(substr({col}, 20, 7) AS REAL), 0))"
                )

        if binary:
            score = number.format(text=text_of % "probability")
            flags = f"{labelled} * 4 + COALESCE({answered}, 0) * 2 + COALESCE({truth}, 0)"
            extra: list[str] = []
            params["label"] = positive
            params["pos"] = positive
        else:
            score = number.format(text=text_of % "value")
            flags = f"{labelled} * 4"
            extra = [real]
        where = (
            f"{{t}}.deployment = {mark('d')} AND {{t}}.created_at < {mark('until')} "
            "AND {t}.output IS NOT NULL"
        )
        if since is not None:
            where += f" AND {{t}}.created_at >= {mark('since')}"
            params["since"] = bound(since)
        roles = (
            "CASE p.role WHEN 'champion' THEN 0 WHEN 'fallback' THEN 0 "
            "WHEN 'challenger' THEN 1 WHEN 'shadow' THEN 2 END"
        )

        def part(t: str, table: str, role: str) -> str:
            # (model version id * 4 + role) * 8 + flags; negative for a group relevo does
            # not know (no registered version, or another role)
            code = f"COALESCE(mv.id * 4 + {role}, -1) * 8 + {flags}"
            columns = [code, epoch("{t}.created_at"), epoch(KNOWN), score, *extra]
            if pg:
                columns = [f"COALESCE(({c})::float8, 'NaN')" for c in columns]
            return (
                f"SELECT {', '.join(columns)} FROM {table} LEFT JOIN model_versions mv "
                "ON mv.name = {t}.model_name AND mv.version = {t}.model_version "
                "LEFT JOIN labels l ON l.prediction_id = {t}.id WHERE " + where
            ).format(t=t)

        width = 4 + len(extra)
        union = (
            f"{part('p', 'predictions p', roles)} "
            f"UNION ALL {part('s', 'shadow_predictions s', '2')}"
        )
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            if pg:
                names = ", ".join(f"c{k}" for k in range(width))
                arrays = ", ".join(f"array_send(array_agg(c{k}))" for k in range(width))
                with raw.cursor(binary=True) as cur:
                    cur.execute(f"SELECT {arrays} FROM ({union}) AS q({names})", params)
                    found = cur.fetchone()
                assert found is not None
                if found[0] is None:  # no rows
                    columns = [np.zeros(0)] * width
                else:
                    columns = [_float8_array(bytes(b)) for b in found]
            else:
                if binary:  # the positive class as SQLite's JSON functions give it, once
                    one = raw.execute("SELECT json_extract(?, '$')", (positive,)).fetchone()
                    params["pos"] = one[0]
                rows = raw.execute(union, params).fetchall()
                data = np.array(rows, dtype=float).reshape(-1, width)
                columns = [data[:, k] for k in range(width)]
            packed = columns[0].astype(np.int64)
            if (packed < 0).any():
                return None
            groups, inverse = np.unique(packed // 8, return_inverse=True)
            ids = sorted({int(g) // 4 for g in groups})
            refs: dict[int, str] = {}
            if ids:
                listed = ", ".join(str(i) for i in ids)
                found_refs = conn.exec_driver_sql(
                    f"SELECT id, name, version FROM model_versions WHERE id IN ({listed})"
                ).all()
                refs = {int(i): f"{n}:{v}" for i, n, v in found_refs}
        # rows of a group together, in prediction time (whatever order the plan gave them:
        # a hash join or a parallel scan does not keep the log's)
        if len(groups) > 1 or (np.diff(columns[1]) < 0).any():
            order = np.lexsort((columns[1], inverse))
            columns = [c[order] for c in columns]
            packed, inverse = packed[order], inverse[order]
        out = {
            "seconds": columns[1],
            "known": columns[2],
            "score": columns[3],
            "labelled": (packed & 4) > 0,
        }
        if binary:
            out["predicted"] = ((packed & 2) > 0).astype(np.float64)
            out["truth"] = (packed & 1).astype(np.float64)
        else:
            out["predicted"] = columns[3]
            out["truth"] = columns[4]
        model = np.array([refs[int(g) // 4] for g in groups], dtype=object)
        role_names = np.array(["champion", "challenger", "shadow"], dtype=object)
        out["model"] = model[inverse]
        out["role"] = role_names[(groups % 4)[inverse]]
        return out


def _float8_array(buffer: bytes) -> np.ndarray:
    """A one-dimensional float8[] without NULLs, in PostgreSQL's binary form (`array_send`):
    dimensions, flags and element type (3 x int32), per dimension its size and lower bound,
    then per element a 32-bit length and 8 big-endian bytes."""
    ndim, flags, _ = np.frombuffer(buffer, dtype=">i4", count=3)
    if ndim != 1 or flags != 0:
        raise ValueError("expected a one-dimensional float8[] without NULLs")
    values = np.frombuffer(buffer, dtype=np.dtype([("size", ">i4"), ("value", ">f8")]), offset=20)
    if (values["size"] != 8).any():
        raise ValueError("a float8[] element is not 8 bytes")
    return values["value"].astype(np.float64)


def _seconds(values: Sequence[Any]) -> np.ndarray:
    """Times as the driver returns them (SQLite: UTC text; PostgreSQL: aware datetimes;
    None where missing) as Unix seconds, NaN for None."""
    if not values:
        return np.zeros(0)
    parsed = pd.to_datetime(pd.Series(values, dtype=object), utc=True, format="ISO8601")
    ns = parsed.dt.as_unit("ns").astype("int64").to_numpy()
    return np.where(parsed.isna().to_numpy(), np.nan, ns / 1e9)
