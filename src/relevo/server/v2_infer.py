"""Open Inference Protocol V2 inference, transport aside: a request's tensors
prepared as the rows `Runtime.predict` validates, and the answers as output tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from relevo.errors import InvalidInputError, PayloadTooLargeError, Problem, RelevoError
from relevo.registry.types import ModelVersion
from relevo.server.http import BadRequest
from relevo.server.v2_columns import tensors_to_columns
from relevo.server.v2_decode import decode_request
from relevo.server.v2_metadata import label_datatype, outputs_of
from relevo.server.v2_types import V2Request, V2Tensor, numpy_dtype_of
from relevo.serving.pool import Endpoint


@dataclass
class Prepared:
    request: V2Request
    rows: list[dict[str, Any]]
    #: (output name, binary?) in response order
    outputs: list[tuple[str, bool]]


def _plan_outputs(req: V2Request, version: ModelVersion, name: str) -> list[tuple[str, bool]]:
    """Which outputs to send, in which order and how: the requested ones, else all of them."""
    known = [o["name"] for o in outputs_of(version)]
    if not req.outputs:
        return [(o, req.binary_output_default) for o in known]
    problems = []
    for out in req.outputs:
        if out.name not in known:
            problems.append(
                Problem(
                    f"unknown output {out.name!r}: model {name!r} has outputs {', '.join(known)}",
                    column=out.name,
                )
            )
        elif "classification" in out.parameters:
            problems.append(
                Problem(
                    f"output {out.name!r}: the classification extension is not supported "
                    "(request 'label' or 'probabilities' instead)",
                    column=out.name,
                )
            )
    if problems:
        raise BadRequest("invalid requested outputs", problems)
    return [(o.name, o.binary) for o in req.outputs]


def _key_values(tensor: V2Tensor) -> list[Any]:
    """The routing key tensor as Python values (str or int; validation judges the rest)."""
    data = tensor.data
    if data.ndim == 2 and data.shape[1] == 1:
        data = data[:, 0]
    elif data.ndim != 1:
        raise BadRequest(
            "the routing key tensor has the wrong shape",
            [
                Problem(
                    f"tensor {tensor.name!r} has shape {list(data.shape)}; the routing key "
                    "needs [n] or [n, 1]",
                    column=tensor.name,
                )
            ],
        )
    values = data.tolist()
    if data.dtype.kind != "O":
        return values
    out: list[Any] = []
    for i, v in enumerate(values):
        if isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest(
                    "the routing key is not text",
                    [Problem("not valid UTF-8 text", row=i, column=tensor.name)],
                ) from None
        out.append(v)
    return out


def _column_values(array: np.ndarray) -> list[Any]:
    """A decoded column as Python values, missing values (NaN) as None for validation."""
    values = array.tolist()
    if array.dtype.kind == "f" and np.isnan(array).any():
        return [None if v != v else v for v in values]
    return values


def _reject_infinity(columns: dict[str, np.ndarray]) -> None:
    """Binary FP64 (and lenient JSON) can carry infinities, which no model should see."""
    problems: list[Problem] = []
    for col, arr in columns.items():
        if arr.dtype.kind == "f":
            rows = np.flatnonzero(np.isinf(arr))
            problems.extend(
                Problem("not a finite number", row=int(r), column=col) for r in rows[:20]
            )
    if problems:
        raise BadRequest("the inputs hold infinite values", problems)


def prepare(
    body: bytes, header_length: int | None, endpoint: Endpoint, name: str, max_rows: int
) -> Prepared:
    """Decode a request and turn its tensors into the rows `Runtime.predict` validates."""
    runner = endpoint.primary
    try:
        req = decode_request(body, header_length, max_rows=max_rows)
    except PayloadTooLargeError:
        raise
    except InvalidInputError as exc:
        raise BadRequest(exc.message, exc.problems) from None
    outputs = _plan_outputs(req, runner.version, name)

    signature = runner.signature
    key_column = endpoint.deployment.key_column
    inputs = req.inputs
    key_tensor = None
    if key_column is not None and key_column not in signature:
        key_tensor = next((t for t in inputs if t.name == key_column), None)
        if key_tensor is not None:
            inputs = [t for t in inputs if t is not key_tensor]
    if not inputs:
        raise BadRequest(
            "no feature tensors",
            [Problem(f"send the model's columns: {', '.join(signature.names)}", column="inputs")],
        )
    try:
        columns = tensors_to_columns(
            inputs, [(c.name, c.kind) for c in signature.columns], _challenger_columns(endpoint)
        )
    except InvalidInputError as exc:
        raise BadRequest(exc.message, exc.problems) from None

    _reject_infinity(columns)
    values = {col: _column_values(arr) for col, arr in columns.items()}
    n = len(next(iter(values.values()))) if values else 0
    if key_tensor is not None:
        keys = _key_values(key_tensor)
        if len(keys) != n:
            raise BadRequest(
                "the routing key tensor does not match the features",
                [
                    Problem(
                        f"{len(keys)} routing keys for {n} rows",
                        column=key_tensor.name,
                    )
                ],
            )
        values[key_tensor.name] = keys
    if n == 0:
        raise BadRequest(
            "the input tensors have no rows",
            [Problem("send at least one row (shape [n] with n >= 1)", column="inputs")],
        )
    names = list(values)
    rows = [dict(zip(names, row, strict=True)) for row in zip(*values.values(), strict=True)]
    return Prepared(req, rows, outputs)


def _challenger_columns(endpoint: Endpoint) -> list[tuple[str, str]]:
    """The columns a challenger (shadow or canary) needs that the champion lacks: a V2 request
    may send them as tensors of their own (the champion ignores them)."""
    if len(endpoint.runners) < 2:
        return []
    known = set(endpoint.runners[0].signature.names)
    return [
        (c.name, c.kind)
        for runner in endpoint.runners[1:]
        for c in runner.signature.columns
        if c.name not in known
    ]


def output_array(name: str, version: ModelVersion, predictions: list[dict[str, Any]]) -> Any:
    if name == "id":
        ids = np.empty(len(predictions), dtype=object)
        ids[:] = [p["id"] for p in predictions]
        return ids
    if name in ("probability", "value"):
        return np.asarray([p[name] for p in predictions], dtype=np.float64)
    if name == "probabilities":
        keys = [str(c) for c in version.classes or ()]
        probs = np.asarray(
            [[p["probabilities"][k] for k in keys] for p in predictions], dtype=np.float64
        )
        return probs.reshape(len(predictions), len(keys))
    # label
    labels = [p["label"] for p in predictions]
    datatype = label_datatype(version.classes)
    if datatype == "BYTES":
        out = np.empty(len(labels), dtype=object)
        out[:] = ["" if x is None else str(x) for x in labels]  # "": no label (a NaN row)
        return out
    if None in labels:  # rows the model answered NaN for: no value of the tensor says so
        rows = [k for k, x in enumerate(labels) if x is None]
        raise RelevoError(
            f"model {version.ref} answered NaN for row(s) {', '.join(map(str, rows[:10]))}: "
            f"they have no label, which the {datatype} label tensor cannot carry (the JSON API "
            "answers them with a null label)",
            public=True,
        )
    return np.asarray(labels, dtype=numpy_dtype_of(datatype))
