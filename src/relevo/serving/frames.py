"""The model's input, built once per (micro-)batch from validated values: a float64 matrix in
signature order for models that take arrays, a DataFrame with the signature's names otherwise."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from relevo.serving.validation import Plan

#: what the micro-batcher carries per submission: the numeric matrix and the other columns,
#: each a list of values (requests) or, for a file's text column, the pandas array as read
Part = tuple[np.ndarray, dict[str, Any]]


def merge_parts(parts: list[Part]) -> Part:
    """Several submissions' rows as one, in order."""
    numbers = np.concatenate([p[0] for p in parts])
    names = parts[0][1].keys()
    others: dict[str, list[Any]] = {name: [] for name in names}
    for _numbers, columns in parts:
        for name in names:
            others[name].extend(columns[name])
    return numbers, others


def build_matrix(part: Part, plan: Plan) -> np.ndarray:
    """A 2-D float64 array, columns in signature order (booleans as 0/1, nulls as NaN): the
    model's own, never the validated matrix itself, which the prediction log's entries carry
    after the call (a model that writes into its input must not change what is profiled)."""
    numbers, others = part
    if plan.all_numeric:
        return numbers.copy(order="K")
    out = np.empty((numbers.shape[0], len(plan.names)), dtype=np.float64)
    out[:, plan.num_idx] = numbers
    for j, name, _allowed in plan.others:
        out[:, j] = np.asarray([np.nan if v is None else v for v in others[name]], dtype=np.float64)
    return out


def build_frame(part: Part, plan: Plan) -> pd.DataFrame:
    """A DataFrame in signature order with the dtypes the model was trained on."""
    numbers, others = part
    data: dict[str, Any] = {}
    positions = {j: p for p, j in enumerate(plan.num_idx)}
    for j, spec in enumerate(plan.specs):
        if j in positions:
            # a copy: a model that writes into its input (clipping in place) must not change
            # the validated values, which the log stores and the profiles read
            column = numbers[:, positions[j]].copy()
            if spec.kind == "integer" and not np.isnan(column).any():
                # integers, as the model saw them (MLflow's schema refuses floats for `long`)
                column = column.astype(np.int64)
            data[spec.name] = column
            continue
        values = others[spec.name]
        if isinstance(values, pd.api.extensions.ExtensionArray) and not spec.missing_none:
            data[spec.name] = values  # a file's text column: the model takes it as read
        elif spec.kind == "boolean" and None not in values:
            data[spec.name] = np.asarray(values, dtype=bool)
        else:
            arr = np.empty(len(values), dtype=object)
            arr[:] = values
            if spec.nullable:
                arr[pd.isna(arr)] = None if spec.missing_none else np.nan
            # objects kept as objects: pandas would make text and None a str column of NaN
            data[spec.name] = pd.Series(arr, dtype=object, copy=False) if spec.missing_none else arr
        if spec.as_category:
            data[spec.name] = pd.Categorical(data[spec.name], categories=spec.categories)
    return pd.DataFrame(data, copy=False)
