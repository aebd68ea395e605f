"""Rows between DataFrames and JSON-like records, for batch scoring, export and the client."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd


def frame_to_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows with every value exact: NaN/NA/NaT become None, NumPy scalars Python
    ones."""
    dates = [c for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c].dtype)]
    if dates:  # JSON has no time type: ISO 8601 text, as pandas and most APIs write it
        frame = frame.assign(**{str(c): frame[c].map(_iso) for c in dates})
    boxed = frame.astype(object)
    records: list[dict[str, Any]] = boxed.where(frame.notna(), None).to_dict("records")
    return records


def flatten_output(output: dict[str, Any], features: set[str]) -> dict[str, Any]:
    """An output object as flat columns: probabilities per class, names clear of features."""
    flat: dict[str, Any] = {}
    for key, value in output.items():
        if key == "probabilities" and isinstance(value, dict):
            for cls, p in value.items():
                flat[f"probability_{cls}"] = p
            continue
        flat[f"output_{key}" if key in features else key] = value
    return flat


#: a logged row's `source` in an export when the store has none: answered to a request
#: (batch scoring's rows are stored as "batch")
REQUEST = "request"

#: the export's own columns (the labels' are added once labels arrived): a logged field of one
#: of these names (a feature, a `log_extra` field) is written as `feature_<name>`, an output
#: as `output_<name>`, so that no column is there twice
OWN_COLUMNS = (
    "id",
    "deployment",
    "model",
    "created_at",
    "routing_key",
    "latency_ms",
    "source",
    "true_label",
    "label_known_at",
    "label_received_at",
)
_BASE = OWN_COLUMNS[: OWN_COLUMNS.index("source") + 1]


def predictions_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Logged prediction rows (store form) as one flat DataFrame for export: `source` says
    where each was answered ("request", or "batch" for `relevo predict`'s rows)."""
    if not rows:
        return pd.DataFrame(columns=list(_BASE))
    features = [orjson.loads(r["features"]) for r in rows]
    names = {k for f in features for k in f}
    outputs = [flatten_output(orjson.loads(r["output"]), names | set(OWN_COLUMNS)) for r in rows]
    base = pd.DataFrame(
        {
            "id": [r["id"] for r in rows],
            "deployment": [r["deployment"] for r in rows],
            "model": [f"{r['model_name']}:{r['model_version']}" for r in rows],
            "created_at": pd.to_datetime([r["created_at"] for r in rows], utc=True),
            "routing_key": [r["routing_key"] for r in rows],
            "latency_ms": np.asarray([r["latency_ms"] for r in rows], dtype=np.float64),
            "source": [r.get("source") or REQUEST for r in rows],
        }
    )
    feats = pd.DataFrame.from_records(features)
    clashing = {n: f"feature_{n}" for n in feats.columns if n in OWN_COLUMNS}
    if clashing:
        feats = feats.rename(columns=clashing)
    outs = pd.DataFrame.from_records(outputs)
    return pd.concat([base, feats, outs], axis=1)


def _iso(value: Any) -> Any:
    return None if pd.isna(value) else value.isoformat()
