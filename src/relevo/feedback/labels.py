"""Ground truth ingestion: labels checked against the model's task, joined to logged predictions
and stored, all or nothing.

Two ways to say which prediction a label belongs to:

- **by prediction id** (the `id` every answer carries): exact;
- **by routing key and time**, for a business that knows the customer but not the prediction:
  a label for key K with event time T belongs to *the latest prediction for K made at or before
  T, and no earlier than T - window* (default 30 days, `RELEVO_FEEDBACK_MATCH_WINDOW_DAYS`). A
  label with no such prediction is reported back as unknown (`key@time`). T is also when the
  truth became known: the label delay runs from the prediction to T, not to the upload. A time
  after the upload's is refused, naming its row and column: a truth cannot become known after it
  was sent, and the prediction it joins to could still change.

A repeated label replaces the earlier one and is counted (`revisions`); ids that are not in the
deployment's log are reported back, never dropped silently; a label of the wrong type refuses
the whole upload, naming its rows, and nothing of it is stored (one transaction).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd

from relevo.errors import InvalidInputError, Problem
from relevo.routing.assign import key_text

if TYPE_CHECKING:
    from relevo.context import Relevo
    from relevo.store.labels import LabelSession

#: problems named in a refusal at most (the count says how many in all)
MAX_PROBLEMS = 50
#: how far ahead of this machine's clock a label's time may be (the sender's clock may run fast)
CLOCK_SKEW = timedelta(minutes=5)
#: a label's known time as it is staged (`LabelSession.stage`): UTC text
TIME_TEXT = "%Y-%m-%d %H:%M:%S.%f+00:00"


@dataclass(frozen=True)
class LabelKind:
    """What a label of a deployment's model must be: a class of a classifier, or a number."""

    task: str
    classes: tuple[Any, ...] = ()

    def parse(self, value: Any) -> Any:
        """The label as stored (a class exactly as the model names it, or a float); raises
        ValueError saying what was expected."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise ValueError("the label is missing")
        if isinstance(value, np.generic):
            value = value.item()
        if self.task == "regression":
            if isinstance(value, str):  # a CSV column with one bad cell is read as text
                try:
                    value = float(value.strip())
                except ValueError:
                    raise ValueError(f"expected a number, got {shown(value)}") from None
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"expected a number, got {shown(value)}")
            if not math.isfinite(value):
                raise ValueError(f"expected a finite number, got {shown(value)}")
            return float(value)
        for cls in self.classes:
            if _same_class(value, cls):
                return cls
        classes = ", ".join(repr(c) for c in self.classes)
        raise ValueError(f"expected one of the model's classes ({classes}), got {shown(value)}")


#: the most characters of a refused value a message repeats (an id or a label may be a
#: megabyte of text: the answer names it, it does not send it back)
SHOWN_CHARS = 60


def shown(value: Any) -> str:
    """A refused value as a message shows it: its repr, cut after SHOWN_CHARS characters."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}..."


def _same_class(value: Any, cls: Any) -> bool:
    if isinstance(cls, bool) and isinstance(value, str):  # read as text, as below
        return value.strip() == str(cls)
    if isinstance(cls, bool) or isinstance(value, bool):
        return type(value) is type(cls) and value == cls
    if isinstance(cls, int | float) and not isinstance(cls, bool):
        if isinstance(value, str):  # a CSV column with one bad cell is read as text
            return value.strip() == str(cls)
        return isinstance(value, int | float) and float(value) == float(cls)
    return isinstance(value, str) and value == str(cls)


def label_kind(rv: Relevo, deployment: str) -> LabelKind:
    """The kind of label the deployment's champion expects."""
    state = rv.deployments.get(deployment)
    version = rv.registry.get(state.model_ref)
    return LabelKind(version.task, tuple(version.classes or ()))


@dataclass(frozen=True)
class FeedbackResult:
    """What an upload did: labels stored, of which replaced an earlier one; what was unknown."""

    deployment: str
    received: int
    accepted: int
    replaced: int
    unknown: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "received": self.received,
            "accepted": self.accepted,
            "replaced": self.replaced,
            "unknown": len(self.unknown),
            "unknown_ids": self.unknown,
        }


@dataclass(frozen=True)
class LabelColumns:
    """What the input calls its columns, for messages: the HTTP body's field names unless a
    file names its own (`--label-column churned`)."""

    id: str = "id"
    label: str = "label"
    key: str = "key"
    time: str = "time"


@dataclass(frozen=True)
class KeyedLabels:
    """A chunk of labels given by routing key and event time (row numbers for messages)."""

    rows: Sequence[int]
    keys: Sequence[Any]
    times: Sequence[Any]
    labels: Sequence[Any]


def ingest(
    rv: Relevo,
    deployment: str,
    chunks: Iterable[tuple[Sequence[int], Sequence[Any], Sequence[Any]]],
    *,
    received_at: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    columns: LabelColumns = LabelColumns(),
) -> FeedbackResult:
    """Store labels given by prediction id: `chunks` yields (row numbers, ids, labels);
    `columns` names the input's columns in messages."""
    kind = label_kind(rv, deployment)
    with rv.store.labels.session() as session:
        problems: list[Problem] = []
        total = [0, 0]  # rows, problems
        for rows, ids, values in chunks:
            _stage(session, kind, rows, ids, values, problems, total, columns)
            if progress is not None:
                progress(len(rows))
        _refuse(problems, total[1])
        if total[0] == 0:
            raise InvalidInputError("no labels: send at least one {id, label} pair")
        done = session.commit(deployment, received_at or datetime.now(UTC))
    return FeedbackResult(deployment, total[0], done.accepted, done.replaced, done.unknown)


def add_labels(
    rv: Relevo, deployment: str, ids: Sequence[str], labels: Sequence[Any]
) -> FeedbackResult:
    """Store `labels` for the predictions `ids` of `deployment` (one upload: all or nothing;
    rows in messages count from 0, as in the HTTP body)."""
    return ingest(rv, deployment, [(range(len(ids)), list(ids), list(labels))])


def ingest_keyed(
    rv: Relevo,
    deployment: str,
    chunks: Iterable[KeyedLabels],
    *,
    window: timedelta | None = None,
    received_at: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    columns: LabelColumns = LabelColumns(),
) -> FeedbackResult:
    """Store labels given by routing key and event time (the rule in the module docstring);
    `columns` names the input's columns in messages."""
    kind = label_kind(rv, deployment)
    window = window or timedelta(days=rv.settings.feedback_match_window_days)
    now = received_at or datetime.now(UTC)
    unknown: list[str] = []
    with rv.store.labels.session() as session:
        problems: list[Problem] = []
        total = [0, 0]
        for chunk in chunks:
            times = _times(chunk, problems, total, columns, now)
            matched = _match(rv, deployment, chunk, times, window) if times is not None else None
            if times is not None and matched is not None:
                ids, missing = matched
                unknown += missing
                keep = [i for i, x in enumerate(ids) if x is not None]
                rows = [chunk.rows[i] for i in keep]
                known = times.dt.floor("us").dt.strftime(TIME_TEXT).tolist()
                _stage(
                    session,
                    kind,
                    rows,
                    [ids[i] for i in keep],
                    [chunk.labels[i] for i in keep],
                    problems,
                    total,
                    columns,
                    [known[i] for i in keep],
                )
                total[0] += len(chunk.rows) - len(keep)
                # a label matching no prediction is still checked: one of the wrong type
                # refuses the whole upload, wherever its key points
                for i in sorted(set(range(len(ids))) - set(keep)):
                    try:
                        kind.parse(chunk.labels[i])
                    except ValueError as exc:
                        _problem(problems, total, Problem(str(exc), chunk.rows[i], columns.label))
            if progress is not None:
                progress(len(chunk.rows))
        _refuse(problems, total[1])
        if total[0] == 0:
            raise InvalidInputError("no labels: the input has no rows")
        done = session.commit(deployment, now)
    return FeedbackResult(deployment, total[0], done.accepted, done.replaced, unknown)


def _stage(
    session: LabelSession,
    kind: LabelKind,
    rows: Sequence[int],
    ids: Sequence[Any],
    values: Sequence[Any],
    problems: list[Problem],
    total: list[int],
    columns: LabelColumns,
    known: Sequence[str] | None = None,
) -> None:
    """Check and stage labels; `known`: when each one's truth became known (UTC text), if
    the input says."""
    if not problems:
        texts = _texts(kind, ids, values)
        if texts is not None:  # every id and label fine: staged as they are
            total[0] += len(texts)
            session.stage(ids, texts, known)
            return
    staged: list[tuple[str, str]] = []
    kept: list[int] = []
    parsed: dict[tuple[type, Any], str] = {}  # a label column holds few distinct values
    for n, (row, pid, value) in enumerate(zip(rows, ids, values, strict=True)):
        total[0] += 1
        if type(pid) is not str:
            pid = pid.item() if isinstance(pid, np.generic) else pid
            if not isinstance(pid, str):
                message = f"expected a prediction id, got {shown(pid)}"
                _problem(problems, total, Problem(message, row, columns.id))
                continue
        if not pid or len(pid) > 32 or "\x00" in pid:
            _problem(
                problems,
                total,
                Problem(f"expected a prediction id, got {shown(pid)}", row, columns.id),
            )
            continue
        key: tuple[type, Any] | None = (type(value), value)
        try:
            text = parsed.get(key)  # type: ignore[arg-type]
        except TypeError:  # unhashable (a list, an object): parsed, never cached
            key, text = None, None
        if text is None:
            try:
                text = orjson.dumps(kind.parse(value)).decode()
            except ValueError as exc:
                _problem(problems, total, Problem(str(exc), row, columns.label))
                continue
            if key is not None and value == value:  # NaN never equals itself: no cache hit
                parsed[key] = text
        staged.append((pid, text))
        kept.append(n)
    if not problems:  # once refused, nothing more needs staging: only the problems count
        session.stage(
            [r[0] for r in staged],
            [r[1] for r in staged],
            None if known is None else [known[n] for n in kept],
        )


def _texts(kind: LabelKind, ids: Sequence[Any], values: Sequence[Any]) -> list[str] | None:
    """The labels as stored (JSON text), when every id is a string of 1 to 32 characters
    without a NUL and every label is fine, checked a column at a time (a label column holds
    few distinct values: each is parsed once); None otherwise, for `_stage` to name the
    problems."""
    if len(ids) != len(values) or not ids:
        return None
    if set(map(type, ids)) != {str} or min(map(len, ids)) < 1 or max(map(len, ids)) > 32:
        return None
    if "\x00" in "".join(ids):  # no prediction id holds one (and PostgreSQL cannot store it)
        return None
    types = set(map(type, values))
    # a class is matched by type and value (1, 1.0 and True are not the same label): keyed
    # by value alone only when every label is of one type
    keys: Iterable[Any] = values if len(types) == 1 else zip(map(type, values), values, strict=True)
    try:
        keyed = list(keys)
        parsed = {
            key: orjson.dumps(kind.parse(key if len(types) == 1 else key[1])).decode()
            for key in set(keyed)
        }
    except (TypeError, ValueError):  # unhashable, or a label to refuse
        return None
    return list(map(parsed.__getitem__, keyed))


def _problem(problems: list[Problem], total: list[int], problem: Problem) -> None:
    total[1] += 1
    if len(problems) < MAX_PROBLEMS:
        problems.append(problem)


def _refuse(problems: list[Problem], count: int) -> None:
    if problems:
        raise InvalidInputError(
            f"{count:,} label{'s' if count != 1 else ''} refused, nothing stored",
            problems,
            total=count,
        )


def _times(
    chunk: KeyedLabels,
    problems: list[Problem],
    total: list[int],
    columns: LabelColumns,
    now: datetime,
) -> pd.Series | None:
    """The labels' times in UTC, or None when a time or a key is refused (each named)."""
    # ISO 8601 in any of its forms, row by row (a format guessed from the first row refused
    # `...10:00:00+00:00` beside `...10:00:00.25+00:00`, as `isoformat()` writes them); a bare
    # number is no time (pandas would read it as nanoseconds since 1970)
    values = [
        None if isinstance(t, int | float | np.number) and not isinstance(t, bool) else t
        for t in chunk.times
    ]
    parsed = pd.to_datetime(
        pd.Series(values, dtype=object), utc=True, errors="coerce", format="ISO8601"
    )
    bad = parsed.isna().to_numpy(copy=True)  # written to below
    for i in np.flatnonzero(bad).tolist():
        total[0] += 1
        _problem(
            problems,
            total,
            Problem(f"expected a time, got {shown(chunk.times[i])}", chunk.rows[i], columns.time),
        )
    # a few minutes ahead is another machine's clock, not a label from the future
    future = (parsed > pd.Timestamp(now) + CLOCK_SKEW).to_numpy()
    for i in np.flatnonzero(future).tolist():
        total[0] += 1
        bad[i] = True
        message = (
            f"{parsed.iloc[i]:%Y-%m-%d %H:%M:%S} UTC is after now ({now:%Y-%m-%d %H:%M:%S} UTC)"
        )
        _problem(problems, total, Problem(message, chunk.rows[i], columns.time))
    for i, key in enumerate(chunk.keys):
        if not bad[i] and (key is None or (isinstance(key, float) and math.isnan(key))):
            total[0] += 1
            bad[i] = True
            _problem(
                problems, total, Problem("the routing key is missing", chunk.rows[i], columns.key)
            )
    return None if bad.any() else parsed


def _match(
    rv: Relevo,
    deployment: str,
    chunk: KeyedLabels,
    times: pd.Series,
    window: timedelta,
) -> tuple[list[str | None], list[str]]:
    """For each label, the id of the latest prediction for its key at or before its time
    within `window` (None if there is none), and the unmatched labels as `key@time`."""
    # as the log keeps them: 10001.0 (a key column with gaps, read as floats) is the key 10001
    keys = [key_text(k) for k in chunk.keys]
    since = times.min().to_pydatetime() - window
    until = times.max().to_pydatetime()
    # a key with a NUL was never logged (predict refuses it), and PostgreSQL cannot be asked
    loggable = sorted({k for k in keys if "\x00" not in k})
    found = list(rv.store.labels.keyed(deployment, loggable, since, until))
    labels = pd.DataFrame({"key": keys, "t": times, "n": np.arange(len(keys))})
    if found:
        logged = pd.DataFrame(found, columns=["id", "key", "t"])
        logged["t"] = pd.to_datetime(logged["t"], utc=True)
        logged["t"] = logged["t"].astype(labels["t"].dtype)
        logged = logged.sort_values("t", kind="stable")
        merged = pd.merge_asof(
            labels.sort_values("t", kind="stable"),
            logged,
            on="t",
            by="key",
            direction="backward",
            tolerance=pd.Timedelta(window),
        ).sort_values("n")
        ids = [None if isinstance(x, float) else x for x in merged["id"].tolist()]
    else:
        ids = [None] * len(keys)
    missing = [f"{keys[i]}@{times.iloc[i].isoformat()}" for i, x in enumerate(ids) if x is None]
    return ids, missing
