"""Model input frames from validated column values, built once per (micro-)batch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from relevo.registry.signature import Signature


def build_frame(columns: dict[str, list[Any]], signature: Signature) -> pd.DataFrame:
    """A DataFrame in signature order with the dtypes the model was trained on."""
    data: dict[str, np.ndarray] = {}
    for spec in signature.columns:
        values = columns[spec.name]
        if spec.kind in ("number", "integer"):
            data[spec.name] = np.asarray(values, dtype=np.float64)
        elif spec.kind == "boolean" and None not in values:
            data[spec.name] = np.asarray(values, dtype=bool)
        else:
            arr = np.asarray(values, dtype=object)
            if spec.nullable:
                arr[pd.isna(arr)] = np.nan
            data[spec.name] = arr
    return pd.DataFrame(data, copy=False)
