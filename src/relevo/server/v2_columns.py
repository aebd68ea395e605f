"""Open Inference Protocol V2: a request's tensors as the model's columns.

Which tensor feeds which column is V2's business (the layouts below); what each column accepts
is decided by `relevo.serving.coercion`, the same rule as the JSON API and batch scoring.
"""

from __future__ import annotations

import numpy as np

from relevo.errors import Problem, RelevoError
from relevo.server.v2_types import V2Tensor, invalid
from relevo.serving.coercion import KINDS, ColumnProblems, convert_array


def tensors_to_columns(
    inputs: list[V2Tensor],
    columns: list[tuple[str, str]],
    optional: list[tuple[str, str]] | None = None,
) -> dict[str, np.ndarray]:
    """Map a request's tensors to the model's feature columns, in signature order.

    `columns` is the signature: (name, kind), kind one of number, integer, boolean, string.
    `optional` are columns a tensor may carry beside them (a challenger's columns the champion
    lacks, in layout (a) only): converted alike when sent, never required.
    Layouts: (a) one tensor per column, named like it, shape [n] or [n, 1]; (b) one 2-D tensor
    [n, k], k = len(columns), its columns in signature order (any name but a column's, unless
    the model has one column).

    Results: number -> float64 (NaN for missing); integer -> int64, or float64 if values are
    missing; boolean -> bool, or object with None if values are missing; string -> object of str.
    BYTES cells are parsed for number/integer/boolean columns ("" means missing).
    """
    optional = [c for c in optional or () if c[0] not in {name for name, _ in columns}]
    for col, kind in [*columns, *optional]:
        if kind not in KINDS:
            raise RelevoError(f"column {col!r} has unknown kind {kind!r}")
    names = [c for c, _ in columns]
    problems: list[Problem] = []
    raw: dict[str, np.ndarray] = {}
    rows: dict[str, int] = {}

    single = inputs[0] if len(inputs) == 1 else None
    if (
        single is not None
        and columns
        and single.data.ndim == 2
        and single.data.shape[1] == len(columns)
        and (single.name not in names or len(columns) == 1)
    ):
        matrix = single.data
        for j, col in enumerate(names):
            raw[col] = matrix[:, j]
            rows[col] = matrix.shape[0]
    else:
        by_name = {t.name: t for t in inputs}
        known = set(names)
        sent = [col for col, _ in optional if col in by_name]
        unexpected = [t.name for t in inputs if t.name not in known and t.name not in sent]
        if single is not None and single.name not in known and single.data.ndim == 2:
            message = (
                f"tensor {single.name!r} has shape {list(single.data.shape)}; as a feature "
                f"matrix it needs [n, {len(columns)}] (one column per model feature: "
                f"{', '.join(names)})"
            )
            raise invalid(
                "the inputs do not match the model's columns",
                [Problem(message, column=single.name)],
            )
        for t in unexpected:
            problems.append(
                Problem(
                    f"unexpected input tensor {t!r}: the model's columns are {', '.join(names)}",
                    column=t,
                )
            )
        for col in [*names, *sent]:
            tensor = by_name.get(col)
            if tensor is None:
                problems.append(Problem("missing input tensor", column=col))
                continue
            data = tensor.data
            if data.ndim == 2 and data.shape[1] == 1:
                data = data[:, 0]
            elif data.ndim != 1:
                problems.append(
                    Problem(
                        f"tensor {col!r} has shape {list(data.shape)}; a column needs [n] or "
                        "[n, 1]",
                        column=col,
                    )
                )
                continue
            raw[col] = data
            rows[col] = data.shape[0]

    if rows and len(set(rows.values())) > 1:
        counts = ", ".join(f"{c}={n}" for c, n in rows.items())
        problems.append(Problem(f"the columns have different row counts ({counts})", column=None))

    out: dict[str, np.ndarray] = {}
    for col, kind in [*columns, *optional]:
        if col in raw:
            try:
                out[col] = convert_array(raw[col], kind)
            except ColumnProblems as bad:
                problems.extend(Problem(msg, row=row, column=col) for row, msg in bad.items)
    if problems:
        raise invalid("the inputs do not match the model's columns", problems)
    return out
