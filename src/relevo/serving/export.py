"""Writing a deployment's prediction log to a file, for `relevo export` and the demo."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from relevo.context import Relevo
from relevo.errors import InvalidInputError
from relevo.serving.records import predictions_frame
from relevo.tables import write_table

SUFFIXES = (".csv", ".parquet", ".pq")


def export_predictions(relevo: Relevo, deployment: str, path: str | Path) -> int:
    """Write every logged prediction of `deployment` (ids, model, time, routing key, features,
    outputs) to `path` (.csv or .parquet); returns the number of rows written."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise InvalidInputError(f"cannot write {path}: use a .csv or .parquet file name")
    relevo.deployments.get(deployment)  # a clear NotFoundError for a name that does not exist
    chunks = [predictions_frame(rows) for rows in relevo.store.predictions.iter_rows(deployment)]
    frame = pd.concat(chunks, ignore_index=True) if chunks else predictions_frame([])
    write_table(frame, path)
    return len(frame)
