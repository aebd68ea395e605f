"""V2 request helpers for the tests: the churn rows as one JSON input tensor per column, and a
post of such a request."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd

from relevo.datasets import CHURN_FEATURES, CHURN_ID


def json_inputs(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """One V2 input per churn column (and the key), typed as a pandas-codec client sends them."""
    inputs = []
    for col in [*CHURN_FEATURES, CHURN_ID]:
        series = rows[col]
        if pd.api.types.is_integer_dtype(series.dtype):
            data, datatype = series.to_numpy(dtype=np.int64).tolist(), "INT64"
        elif pd.api.types.is_float_dtype(series.dtype):
            data, datatype = series.to_numpy(dtype=np.float64).tolist(), "FP64"
        else:
            data, datatype = series.astype(str).tolist(), "BYTES"
        values = [None if v != v else v for v in data]
        inputs.append({"name": col, "datatype": datatype, "shape": [len(rows)], "data": values})
    return inputs


def post(url: str, doc: dict[str, Any]) -> httpx.Response:
    return httpx.post(url, content=orjson.dumps(doc), timeout=30)
