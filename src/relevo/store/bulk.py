"""Bulk inserts of tuples into one table: what the prediction log and the shadow worker write.

One transaction per call: PostgreSQL through COPY, SQLite through multi-row INSERTs. Rows whose
primary key is already stored are skipped, so a write can be retried after one that did commit
(the reply to COMMIT was lost). The values are laid out column by column where the driver
would otherwise take them row by row and value by value: the COPY text is made here (psycopg's
`write_row` converts each value on its own, ~6 us a prediction row), and SQLite gets one flat
list per statement with each timestamp bound once.

Why not `executemany`: it releases and retakes the GIL for every row, so under load the writer
thread and the event loop fight for it (measured 1.7x slower on SQLite with a busy Python
thread beside it, 3x more writer CPU per row on PostgreSQL); SQLAlchemy's executemany of dicts
adds its own per-row work on top.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from itertools import chain
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Connection, Engine

#: one stored row, values in the order of the inserter's columns
Row = tuple[Any, ...]

#: rows per SQLite INSERT statement: large enough that binding, not per-statement overhead,
#: dominates; the tail goes in power-of-two statements so few distinct texts get compiled
_SQLITE_ROWS = 1024


class BulkInsert:
    """Inserts rows (tuples in `columns` order) into `table`, skipping stored primary keys."""

    def __init__(
        self,
        engine: Engine,
        table: Table,
        columns: Sequence[str],
        key: str,
        time: str,
        convert: dict[str, Callable[[Sequence[Any]], list[Any]]] | None = None,
    ) -> None:
        self.engine = engine
        #: per column position, what makes its values storable (a column at a time)
        self._convert = [(columns.index(c), f) for c, f in (convert or {}).items()]
        self.table = table.name
        self.columns = tuple(columns)
        self.key = key
        self._names = ", ".join(self.columns)
        self._postgres = engine.dialect.name == "postgresql"
        # the timestamp column bound exactly as SQLAlchemy binds it (SQLite: UTC text)
        self._time = self.columns.index(time)
        bind = table.c[time].type.bind_processor(engine.dialect)
        if bind is not None and engine.dialect.name == "sqlite":
            # the text sqlite3's default datetime adapter makes (`isoformat(" ")`), made once
            # per timestamp here instead of once per row by the driver
            def bind_sqlite(value: Any, bind: Any = bind) -> Any:
                bound = bind(value)
                return bound.isoformat(" ") if isinstance(bound, datetime) else bound

            self._bind_time: Callable[[Any], Any] | None = bind_sqlite
        else:
            self._bind_time = bind

    def __call__(self, rows: Sequence[Row]) -> int:
        """Insert `rows` in one transaction; returns the rows handed in."""
        if not rows:
            return 0
        with self.engine.begin() as conn:
            self.within(conn, rows)
        return len(rows)

    def within(self, conn: Connection, rows: Sequence[Row]) -> None:
        """Insert `rows` in the transaction of `conn` (one commit for several tables)."""
        if not rows:
            return
        raw = conn.connection.driver_connection
        assert raw is not None
        cur = raw.cursor()
        try:
            if self._postgres:
                self._copy_postgres(cur, rows)
            else:
                self._insert_sqlite(cur, rows)
        finally:
            cur.close()

    def _bound(self, times: Sequence[Any]) -> list[Any]:
        # the rows of one request share their timestamp object: bind each once
        bind = self._bind_time
        if bind is None:
            return list(times)
        out = []
        last: Any = None
        bound: Any = None
        for when in times:
            if when is not last:
                last, bound = when, bind(when)
            out.append(bound)
        return out

    def _flat(self, rows: Sequence[Row]) -> list[Any]:
        """The values of `rows` one after the other, timestamps bound."""
        flat = list(chain.from_iterable(rows))
        width, i = len(self.columns), self._time
        flat[i::width] = self._bound(flat[i::width])
        for k, convert in self._convert:
            flat[k::width] = convert(flat[k::width])
        return flat

    def _insert_sqlite(self, cur: Any, rows: Sequence[Row]) -> None:
        # SQLite's bound-variable limit is 32,766 in today's builds (999 before 3.32): 1,024
        # rows of 10 columns fit the former; older libraries get smaller statements
        limit = max(1, _variable_limit(cur) // len(self.columns))
        per = min(_SQLITE_ROWS, limit)
        i, total = 0, len(rows)
        while i < total:
            left = total - i
            k = per if left >= per else 1 << (left.bit_length() - 1)
            sql = _sqlite_insert(self.table, self.columns, self.key, k)
            cur.execute(sql, self._flat(rows[i : i + k]))
            i += k

    def _copy_postgres(self, cur: Any, rows: Sequence[Row]) -> None:
        # COPY cannot skip conflicts: it fills a temporary table (emptied at commit) that one
        # INSERT ... ON CONFLICT moves into the table. Measured 15k rows/s against 8k for
        # executemany and 3.7k for multi-row VALUES, at a third of the writer's CPU per row.
        table, names = self.table, self._names
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {table}_incoming "
            f"(LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        columns = [list(c) for c in zip(*rows, strict=True)]
        columns[self._time] = self._bound(columns[self._time])
        for k, convert in self._convert:
            columns[k] = convert(columns[k])
        text = _copy_text(columns)
        with cur.copy(f"COPY {table}_incoming ({names}) FROM STDIN") as copy:
            if text is not None:
                copy.write(text)
            else:  # a type the text is not made for here: psycopg converts it
                for row in zip(*columns, strict=True):
                    copy.write_row(row)
        cur.execute(
            f"INSERT INTO {table} ({names}) SELECT {names} "
            f"FROM {table}_incoming ON CONFLICT ({self.key}) DO NOTHING"
        )


#: what COPY's text format escapes, as psycopg escapes it
_COPY_SPECIAL = re.compile("[\b\t\n\v\f\r\\\\]")
_COPY_ESCAPES = {
    "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r",
    "\\": "\\\\",
}  # fmt: skip


def _copy_text(columns: list[list[Any]]) -> str | None:
    """The rows of `columns` in COPY's text format, each value as psycopg's text dumpers write
    it; None when a column holds a type other than text, int, float, datetime or null."""
    texts = [_copy_column(c) for c in columns]
    if any(t is None for t in texts):
        return None
    return "\n".join(map("\t".join, zip(*texts, strict=True))) + "\n"


def _copy_column(values: list[Any]) -> list[str] | None:
    kinds = set(map(type, values))
    if kinds <= {int, float}:  # (not bool: psycopg writes it as t/f)
        return list(map(str, values))
    if kinds <= {int, float, type(None)}:  # numbers with nulls (a batch's place in its inputs)
        return ["\\N" if v is None else str(v) for v in values]
    if kinds == {datetime}:  # the rows of a request share their timestamp: one text each
        out = []
        last: Any = None
        text = ""
        for v in values:
            if v is not last:
                last, text = v, str(v)
            out.append(text)
        return out
    if kinds <= {str, type(None)}:
        if kinds == {str}:
            joined = "".join(values)  # (`in` is a fast search: the regex took ~30x longer)
            if not any(c in joined for c in _COPY_ESCAPES):
                return values
        return ["\\N" if v is None else _COPY_SPECIAL.sub(_copy_escape, v) for v in values]
    return None


def _copy_escape(match: re.Match[str]) -> str:
    return _COPY_ESCAPES[match.group(0)]


@lru_cache(maxsize=64)
def _sqlite_insert(table: str, columns: tuple[str, ...], key: str, k: int) -> str:
    one = "(" + ",".join("?" * len(columns)) + ")"
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES {','.join([one] * k)} "
        f"ON CONFLICT ({key}) DO NOTHING"
    )


def _variable_limit(cur: Any) -> int:
    try:
        import sqlite3

        return int(cur.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    except (AttributeError, ImportError):  # Python < 3.11 has no getlimit
        return 999
