"""Writing a deployment's prediction log to a file, for `relevo export` and the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from relevo.context import Relevo
from relevo.errors import InvalidInputError
from relevo.serving.records import predictions_frame
from relevo.tables import write_table

SUFFIXES = (".csv", ".parquet", ".pq")

#: a cell starting with one of these is run as a formula by spreadsheet programs (OWASP,
#: "CSV injection"): a request field like `=HYPERLINK(...)` must not become one
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def export_predictions(relevo: Relevo, deployment: str, path: str | Path) -> int:
    """Write every logged prediction of `deployment` (ids, model, time, routing key, latency,
    source: "request" or "batch", features, outputs; once labels arrived, `true_label`,
    `label_known_at` and `label_received_at`) to `path` (.csv or .parquet, private to the
    user: 0600); returns the number of rows written. CSV text cells that a spreadsheet would
    run as a formula are escaped with a leading `'`; Parquet keeps every value exactly."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise InvalidInputError(f"cannot write {path}: use a .csv or .parquet file name")
    relevo.deployments.get(deployment)  # a clear NotFoundError for a name that does not exist
    labelled = relevo.store.labels.count(deployment) > 0
    chunks = [
        _with_labels(relevo, predictions_frame(rows)) if labelled else predictions_frame(rows)
        for rows in relevo.store.predictions.iter_rows(deployment)
    ]
    frame = pd.concat(chunks, ignore_index=True) if chunks else predictions_frame([])
    if path.suffix.lower() == ".csv":
        frame = escape_formulas(frame)
    if not path.parent.is_dir():
        raise InvalidInputError(f"cannot write {path}: folder {path.parent} does not exist")
    write_table(frame, path, private=True)  # 0600: it holds the log
    return len(frame)


def _with_labels(relevo: Relevo, frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with the ground truth that arrived for its rows (`true_label`, as sent) and
    when its truth became known (`label_known_at`) and when it was uploaded
    (`label_received_at`); empty where none came."""
    found = relevo.store.labels.for_ids(frame["id"].tolist())
    labels = [orjson.loads(found[i][0]) if i in found else None for i in frame["id"]]

    def times(k: int) -> pd.Series:
        values = [found[i][k] if i in found else None for i in frame["id"]]
        return pd.to_datetime(pd.Series(values, index=frame.index), utc=True)

    return frame.assign(
        true_label=pd.Series(labels, index=frame.index, dtype=object),
        label_known_at=times(2),
        label_received_at=times(1),
    )


def escape_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with every text cell (and column name) that starts like a formula prefixed
    with `'`. Numbers stay numbers: -3 in a numeric column is a value, not a formula."""
    fixed = {}
    for name in frame.columns:
        column = frame[name]
        if column.dtype == object or pd.api.types.is_string_dtype(column.dtype):
            escaped = column.map(_escape_cell)
            if not escaped.equals(column):
                fixed[name] = escaped
    if fixed:
        frame = frame.assign(**fixed)
    renamed = {c: _escape_cell(c) for c in frame.columns if _escape_cell(c) != c}
    return frame.rename(columns=renamed) if renamed else frame


def _escape_cell(value: Any) -> Any:
    if type(value) is str and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
