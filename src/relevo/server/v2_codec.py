"""Open Inference Protocol V2 (KServe v2 / Triton HTTP REST) codec, with binary tensor data.

Pure and transport-free: bytes in, dataclasses and numpy arrays out, and back. The HTTP layer
passes the body and the value of the `Inference-Header-Content-Length` header, and sends that
header back when `encode_response` returns a JSON header length.

Wire format (binary tensor data extension): the body is a JSON object, optionally followed by
raw tensor bytes. Each input whose parameters carry `binary_data_size: N` takes the next N
bytes, in input order. Numbers are little-endian, row-major, unpadded; BOOL is one byte per
element; BYTES is, per element, a 4-byte little-endian length followed by the bytes.

Every problem with a request raises `InvalidInputError` whose problems name the tensor (or the
field) at fault; a request is checked whole, so one error lists every bad input.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from relevo.errors import InvalidInputError, Problem, RelevoError

__all__ = [
    "COLUMN_KINDS",
    "DATATYPES",
    "RequestedOutput",
    "V2Request",
    "V2Tensor",
    "datatype_of",
    "decode_request",
    "encode_response",
    "numpy_dtype_of",
    "tensors_to_columns",
]

#: V2 datatype -> little-endian numpy dtype of its binary form (BYTES: object)
_WIRE_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
#: V2 datatype -> native numpy dtype of decoded arrays
_NATIVE_DTYPES: dict[str, np.dtype[Any]] = {
    name: dt.newbyteorder("=") for name, dt in _WIRE_DTYPES.items()
}
DATATYPES: tuple[str, ...] = tuple(_WIRE_DTYPES)
COLUMN_KINDS: tuple[str, ...] = ("number", "integer", "boolean", "string")

_INT_BY_SIZE = {1: "INT8", 2: "INT16", 4: "INT32", 8: "INT64"}
_UINT_BY_SIZE = {1: "UINT8", 2: "UINT16", 4: "UINT32", 8: "UINT64"}
_FLOAT_BY_SIZE = {2: "FP16", 4: "FP32", 8: "FP64"}

_TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1"})
_FALSE_WORDS = frozenset({"false", "f", "no", "n", "0"})
_MAX_PROBLEMS_PER_COLUMN = 20
_LEN = struct.Struct("<I")


# ------------------------------------------------------------------------------ data model


@dataclass
class V2Tensor:
    """One input tensor. `data` is already reshaped to `shape`.

    BYTES data is an object array whose elements are `str` (valid UTF-8) or `bytes` (not).
    """

    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class RequestedOutput:
    """An output the client asked for; `binary` is the effective choice (own flag or default)."""

    name: str
    binary: bool
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class V2Request:
    id: str | None
    inputs: list[V2Tensor]
    outputs: list[RequestedOutput]
    parameters: dict[str, Any]
    #: request-level `binary_data_output`: return outputs not listed in `outputs` as binary
    binary_output_default: bool


class _Bad(Exception):
    """Internal: one problem with one tensor or field; collected into an InvalidInputError."""

    def __init__(self, message: str, column: str | None) -> None:
        super().__init__(message)
        self.problem = Problem(message, column=column)


def _invalid(message: str, problems: list[Problem]) -> InvalidInputError:
    return InvalidInputError(message, problems)


# ------------------------------------------------------------------------------- datatypes


def numpy_dtype_of(datatype: str) -> np.dtype[Any]:
    """The (native byte order) numpy dtype of a V2 datatype; BYTES maps to object."""
    try:
        return _NATIVE_DTYPES[datatype]
    except (KeyError, TypeError):
        raise _invalid(
            f"unknown V2 datatype {datatype!r}",
            [Problem(f"unknown datatype {datatype!r}; expected one of {', '.join(DATATYPES)}")],
        ) from None


def datatype_of(array: np.ndarray) -> str:
    """The V2 datatype of a numpy array (object, str and bytes arrays are BYTES)."""
    dt = np.asarray(array).dtype
    kind, size = dt.kind, dt.itemsize
    name: str | None = None
    if kind == "b":
        name = "BOOL"
    elif kind == "i":
        name = _INT_BY_SIZE.get(size)
    elif kind == "u":
        name = _UINT_BY_SIZE.get(size)
    elif kind == "f":
        name = _FLOAT_BY_SIZE.get(size)
    elif kind in "OUS":
        name = "BYTES"
    if name is None:
        raise RelevoError(f"numpy dtype {dt} has no Open Inference Protocol V2 datatype")
    return name


# ---------------------------------------------------------------------------------- decode


def decode_request(body: bytes, header_length: int | None) -> V2Request:
    """Decode a V2 inference request body.

    `header_length` is the value of `Inference-Header-Content-Length` (the JSON part's length in
    bytes), None when the header is absent and the whole body is JSON.
    """
    if isinstance(body, str):
        body = body.encode("utf-8")
    elif not isinstance(body, bytes):
        body = bytes(body)  # one memcpy; bytes slicing is the fastest path for BYTES elements
    total = len(body)
    if header_length is None:
        json_end = total
    else:
        if isinstance(header_length, bool) or not isinstance(header_length, int):
            try:
                header_length = int(header_length)
            except (TypeError, ValueError):
                raise _invalid(
                    "invalid Inference-Header-Content-Length",
                    [Problem(f"not an integer: {header_length!r}", column="header_length")],
                ) from None
        if not 0 <= header_length <= total:
            raise _invalid(
                "invalid Inference-Header-Content-Length",
                [
                    Problem(
                        f"Inference-Header-Content-Length is {header_length} but the body has "
                        f"{total} bytes",
                        column="header_length",
                    )
                ],
            )
        json_end = header_length

    doc = _parse_json(memoryview(body)[:json_end], header_length is None)
    if not isinstance(doc, dict):
        raise _invalid(
            "invalid inference request",
            [Problem("the request body must be a JSON object", column="body")],
        )

    problems: list[Problem] = []

    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        problems.append(Problem(f"'id' must be a string, got {request_id!r}", column="id"))
        request_id = None

    parameters = doc.get("parameters")
    if parameters is None:
        parameters = {}
    elif not isinstance(parameters, dict):
        problems.append(Problem("'parameters' must be an object", column="parameters"))
        parameters = {}
    binary_default = parameters.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        problems.append(
            Problem("'binary_data_output' must be true or false", column="binary_data_output")
        )
        binary_default = False

    raw_inputs = doc.get("inputs")
    inputs: list[V2Tensor] = []
    if not isinstance(raw_inputs, list) or not raw_inputs:
        problems.append(Problem("'inputs' must be a non-empty list of tensors", column="inputs"))
        raw_inputs = []

    offset = json_end
    seen: set[str] = set()
    for index, raw in enumerate(raw_inputs):
        try:
            tensor, offset = _decode_input(raw, index, body, offset, total, header_length)
        except _Bad as bad:
            problems.append(bad.problem)
            failed = True
        except (ValueError, TypeError, OverflowError, MemoryError) as exc:  # belt and braces
            label = raw.get("name") if isinstance(raw, dict) else None
            where = label if isinstance(label, str) else f"inputs[{index}]"
            problems.append(Problem(f"input {where!r} cannot be decoded: {exc}", column=where))
            failed = True
        else:
            failed = False
        if failed:
            params = raw.get("parameters") if isinstance(raw, dict) else None
            size = params.get("binary_data_size") if isinstance(params, dict) else None
            if isinstance(size, int) and not isinstance(size, bool) and size > 0:
                offset += size  # keep later tensors' offsets right
            continue
        if tensor.name in seen:
            problems.append(
                Problem(f"input {tensor.name!r} is given more than once", column=tensor.name)
            )
        seen.add(tensor.name)
        inputs.append(tensor)
    if header_length is not None and offset < total and not problems:
        problems.append(
            Problem(
                f"{total - offset} bytes of binary data after the JSON header belong to no input "
                "(check the inputs' binary_data_size)",
                column="body",
            )
        )

    outputs = _decode_outputs(doc.get("outputs"), binary_default, problems)

    if problems:
        raise _invalid("invalid inference request", problems)
    return V2Request(
        id=request_id,
        inputs=inputs,
        outputs=outputs,
        parameters=parameters,
        binary_output_default=binary_default,
    )


def _parse_json(data: bytes | memoryview, whole_body: bool) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        first_error = str(exc)
    # Rare path: tritonclient (python-rapidjson) writes NaN/Infinity for non-finite floats in
    # JSON tensors, which orjson rejects as non-standard; the stdlib parser accepts them.
    try:
        return json.loads(bytes(data).decode("utf-8"))
    except (ValueError, RecursionError):
        pass
    hint = (
        " (a body carrying binary tensor data needs the Inference-Header-Content-Length header)"
        if whole_body
        else ""
    )
    raise _invalid(
        "invalid inference request",
        [Problem(f"the JSON header is not valid JSON: {first_error}{hint}", column="body")],
    )


def _decode_input(
    raw: Any,
    index: int,
    body: bytes,
    offset: int,
    total: int,
    header_length: int | None,
) -> tuple[V2Tensor, int]:
    where = f"inputs[{index}]"
    if not isinstance(raw, dict):
        raise _Bad(f"{where} must be an object", where)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise _Bad(f"{where} has no 'name' (a non-empty string)", where)
    label = f"input {name!r}"

    datatype = raw.get("datatype")
    if not isinstance(datatype, str):
        raise _Bad(f"{label} has no 'datatype'", name)
    if datatype not in _WIRE_DTYPES:
        hint = " (not supported by relevo)" if datatype == "BF16" else ""
        raise _Bad(
            f"{label} has unknown datatype {datatype!r}{hint}; "
            f"expected one of {', '.join(DATATYPES)}",
            name,
        )

    shape = raw.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise _Bad(f"{label} needs 'shape', a list of non-negative integers; got {shape!r}", name)
    count = math.prod(shape)

    parameters = raw.get("parameters")
    if parameters is None:
        parameters = {}
    elif not isinstance(parameters, dict):
        raise _Bad(f"{label}: 'parameters' must be an object", name)
    if "shared_memory_region" in parameters:
        raise _Bad(f"{label} uses shared memory, which this server does not support", name)

    size = parameters.get("binary_data_size")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise _Bad(f"{label}: binary_data_size must be a non-negative integer", name)
        if "data" in raw:
            raise _Bad(f"{label} has both 'data' and binary_data_size", name)
        if header_length is None:
            raise _Bad(
                f"{label} has binary_data_size but the request has no "
                "Inference-Header-Content-Length header",
                name,
            )
        if offset + size > total:
            raise _Bad(
                f"{label} claims {size} bytes of binary data but only {max(total - offset, 0)} "
                "remain in the body",
                name,
            )
        data = _decode_binary(body, offset, size, datatype, count, label, name)
        offset += size
    else:
        if "data" not in raw:
            raise _Bad(f"{label} has no 'data' (and no binary_data_size)", name)
        data = _decode_json_data(raw["data"], datatype, count, label, name)

    return V2Tensor(name, datatype, list(shape), data.reshape(shape), parameters), offset


def _decode_binary(
    body: bytes,
    offset: int,
    size: int,
    datatype: str,
    count: int,
    label: str,
    name: str,
) -> np.ndarray:
    if datatype == "BYTES":
        return _decode_bytes_elements(body, offset, size, count, label, name)
    wire = _WIRE_DTYPES[datatype]
    expected = count * wire.itemsize
    if size != expected:
        raise _Bad(
            f"{label}: binary_data_size is {size} but {count} {datatype} values take "
            f"{expected} bytes",
            name,
        )
    if datatype == "BOOL":
        return np.frombuffer(body, dtype=np.uint8, count=count, offset=offset) != 0
    # copy: aligned, native byte order and writable (frombuffer over bytes is read-only)
    return np.frombuffer(body, dtype=wire, count=count, offset=offset).astype(
        _NATIVE_DTYPES[datatype], copy=True
    )


def _decode_bytes_elements(
    body: bytes, offset: int, size: int, count: int, label: str, name: str
) -> np.ndarray:
    if count > size // 4:
        raise _Bad(
            f"{label}: {count} BYTES elements need at least {4 * count} bytes but "
            f"binary_data_size is {size}",
            name,
        )
    end = offset + size
    pos = offset
    unpack = _LEN.unpack_from
    chunks: list[bytes] = []
    append = chunks.append
    for i in range(count):
        if pos + 4 > end:
            raise _Bad(
                f"{label}: BYTES data ends after {i} of {count} elements "
                "(each element is a 4-byte little-endian length followed by its bytes)",
                name,
            )
        start = pos + 4
        pos = start + unpack(body, pos)[0]
        if pos > end:
            raise _Bad(
                f"{label}: BYTES element {i} declares {pos - start} bytes but only "
                f"{end - start} remain in its binary_data_size",
                name,
            )
        append(body[start:pos])
    if pos != end:
        raise _Bad(
            f"{label}: binary_data_size is {size} but its {count} BYTES elements take "
            f"{pos - offset} bytes",
            name,
        )
    try:
        items: list[str | bytes] = [c.decode("utf-8") for c in chunks]
    except UnicodeDecodeError:  # keep the elements that are not text as bytes
        items = [_text_or_bytes(c) for c in chunks]
    out = np.empty(count, dtype=object)
    out[:] = items
    return out


def _text_or_bytes(chunk: bytes) -> str | bytes:
    try:
        return chunk.decode("utf-8")
    except UnicodeDecodeError:
        return chunk


def _decode_json_data(data: Any, datatype: str, count: int, label: str, name: str) -> np.ndarray:
    if not isinstance(data, list):
        data = [data]  # a lone scalar
    if datatype == "BYTES":
        return _decode_json_strings(data, count, label, name)
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError):
        raise _Bad(f"{label}: 'data' is a ragged nested list", name) from None
    if arr.size != count:
        raise _Bad(f"{label}: shape needs {count} values but 'data' has {arr.size}", name)
    native = _NATIVE_DTYPES[datatype]
    kind = arr.dtype.kind
    if native.kind == "f":
        if kind in "iuf":
            return arr.astype(native).reshape(-1)
        if kind == "O":  # null stands for NaN (JSON has no NaN; orjson writes null)
            flat = arr.reshape(-1)
            if all(v is None or (type(v) in (int, float)) for v in flat):
                return np.array([np.nan if v is None else v for v in flat], dtype=native)
        raise _Bad(f"{label}: {datatype} data must be numbers", name)
    if native.kind in "iu":
        if kind == "f":
            if not np.all(np.isfinite(arr)) or not np.all(arr == np.trunc(arr)):
                raise _Bad(f"{label}: {datatype} data must be integers", name)
        elif kind not in "iu" and arr.size:
            raise _Bad(f"{label}: {datatype} data must be integers", name)
        if arr.size:
            info = np.iinfo(native)
            lo, hi = arr.min(), arr.max()
            if lo < info.min or hi > info.max:
                raise _Bad(
                    f"{label}: values out of range for {datatype} ({info.min}..{info.max})",
                    name,
                )
        return arr.astype(native).reshape(-1)
    # BOOL
    if kind == "b" or arr.size == 0:
        return arr.astype(bool).reshape(-1)
    if kind in "iu" and np.all((arr == 0) | (arr == 1)):
        return arr.astype(bool).reshape(-1)
    raise _Bad(f"{label}: BOOL data must be true or false", name)


def _decode_json_strings(data: list[Any], count: int, label: str, name: str) -> np.ndarray:
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:  # iterative flatten: no recursion limit on deep nesting
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            if not isinstance(item, str):
                raise _Bad(f"{label}: BYTES data must be strings, got {item!r}", name)
            flat.append(item)
        else:
            stack.pop()
    if len(flat) != count:
        raise _Bad(f"{label}: shape needs {count} values but 'data' has {len(flat)}", name)
    out = np.empty(count, dtype=object)
    out[:] = flat
    return out


def _decode_outputs(
    raw: Any, binary_default: bool, problems: list[Problem]
) -> list[RequestedOutput]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append(Problem("'outputs' must be a list", column="outputs"))
        return []
    outputs: list[RequestedOutput] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        where = f"outputs[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            problems.append(Problem(f"{where} must be an object with a 'name'", column=where))
            continue
        name = item["name"]
        params = item.get("parameters")
        if params is None:
            params = {}
        elif not isinstance(params, dict):
            problems.append(
                Problem(f"output {name!r}: 'parameters' must be an object", column=name)
            )
            continue
        binary = params.get("binary_data", binary_default)
        if not isinstance(binary, bool):
            problems.append(
                Problem(f"output {name!r}: binary_data must be true or false", column=name)
            )
            continue
        if name in seen:
            problems.append(Problem(f"output {name!r} is requested more than once", column=name))
            continue
        seen.add(name)
        outputs.append(RequestedOutput(name=name, binary=binary, parameters=params))
    return outputs


# ---------------------------------------------------------------------------------- encode


def encode_response(
    *,
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    outputs: list[tuple[str, np.ndarray, bool]],
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """Encode a V2 inference response.

    Each output is (name, array, binary?). Returns (body, JSON header length), the length being
    None when no output is binary (then the whole body is JSON and no
    `Inference-Header-Content-Length` header is needed).

    JSON has no NaN or infinity: non-finite floats in JSON outputs are written as null
    (send them as binary outputs to keep them exact).
    """
    doc: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        doc["model_version"] = model_version
    if request_id is not None:
        doc["id"] = request_id
    if parameters:
        doc["parameters"] = parameters
    out_docs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, array, binary in outputs:
        arr = np.asarray(array)
        datatype = datatype_of(arr)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if datatype == "BYTES":
            items = _bytes_items(arr)
            texts = None if binary else _as_texts(items)
            if texts is None:  # binary requested, or some element is not UTF-8
                blob = _encode_bytes_elements(items)
                entry["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            else:
                entry["data"] = texts
        elif binary:
            wire = _WIRE_DTYPES[datatype]
            blob = np.ascontiguousarray(arr, dtype=wire).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = np.ascontiguousarray(arr.reshape(-1), dtype=_NATIVE_DTYPES[datatype])
        out_docs.append(entry)
    doc["outputs"] = out_docs
    try:
        header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError as exc:
        raise RelevoError(f"cannot encode the inference response as JSON: {exc}") from None
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def _bytes_items(arr: np.ndarray) -> list[Any]:
    """The elements of a BYTES array, row-major, each as str or bytes."""
    items = arr.reshape(-1).tolist()
    if arr.dtype.kind in "US":
        return items
    return [x if isinstance(x, (str, bytes)) else "" if x is None else str(x) for x in items]


def _as_texts(items: list[Any]) -> list[str] | None:
    try:
        return [x.decode("utf-8") if isinstance(x, bytes) else x for x in items]
    except UnicodeDecodeError:
        return None


def _encode_bytes_elements(items: list[Any]) -> bytes:
    parts: list[bytes] = []
    pack = _LEN.pack
    for x in items:
        b = x.encode("utf-8") if isinstance(x, str) else x
        parts.append(pack(len(b)))
        parts.append(b)
    return b"".join(parts)


# --------------------------------------------------------------------------------- columns


def tensors_to_columns(
    inputs: list[V2Tensor], columns: list[tuple[str, str]]
) -> dict[str, np.ndarray]:
    """Map a request's tensors to the model's feature columns, in signature order.

    `columns` is the signature: (name, kind), kind one of number, integer, boolean, string.
    Layouts: (a) one tensor per column, named like it, shape [n] or [n, 1]; (b) one 2-D tensor
    [n, k], k = len(columns), its columns in signature order (any name but a column's, unless
    the model has one column).

    Results: number -> float64 (NaN for missing); integer -> int64, or float64 if values are
    missing; boolean -> bool, or object with None if values are missing; string -> object of str.
    BYTES cells are parsed for number/integer/boolean columns ("" means missing).
    """
    for col, kind in columns:
        if kind not in COLUMN_KINDS:
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
        unexpected = [t.name for t in inputs if t.name not in known]
        if single is not None and single.name not in known and single.data.ndim == 2:
            message = (
                f"tensor {single.name!r} has shape {list(single.data.shape)}; as a feature "
                f"matrix it needs [n, {len(columns)}] (one column per model feature: "
                f"{', '.join(names)})"
            )
            raise _invalid(
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
        for col in names:
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
    for col, kind in columns:
        if col in raw:
            try:
                out[col] = _convert_column(raw[col], kind)
            except _ColumnProblems as bad:
                problems.extend(Problem(msg, row=row, column=col) for row, msg in bad.items)
    if problems:
        raise _invalid("the inputs do not match the model's columns", problems)
    return out


class _ColumnProblems(Exception):
    def __init__(self, items: list[tuple[int | None, str]]) -> None:
        super().__init__(items[0][1] if items else "")
        self.items = items


def _convert_column(values: np.ndarray, kind: str) -> np.ndarray:
    if values.dtype.kind in "US":
        values = values.astype(object)
    k = values.dtype.kind
    if kind == "string":
        return _to_strings(values)
    if k == "O":
        return _parse_cells(values, kind)
    if kind == "number":
        if k in "biuf":
            return values.astype(np.float64)
    elif kind == "integer":
        if k in "biu":
            if k == "u" and values.size and values.max() > np.iinfo(np.int64).max:
                raise _ColumnProblems([(None, "values too large for a 64-bit integer")])
            return values.astype(np.int64)
        if k == "f":
            missing = np.isnan(values)
            finite = values[~missing]
            bad = ~np.isfinite(finite) | (finite != np.trunc(finite))
            if bad.any():
                rows = np.flatnonzero(~missing)[bad]
                raise _ColumnProblems(_row_list(rows, "not an integer"))
            if missing.any():
                return values.astype(np.float64)
            return values.astype(np.int64)
    elif kind == "boolean":
        if k == "b":
            return values.astype(bool)
        if k in "iuf":
            missing = np.isnan(values) if k == "f" else np.zeros(values.shape, bool)
            bad = ~missing & (values != 0) & (values != 1)
            if bad.any():
                raise _ColumnProblems(_row_list(np.flatnonzero(bad), "not a boolean (0 or 1)"))
            if missing.any():
                out = np.empty(values.shape, dtype=object)
                out[:] = values != 0
                out[missing] = None
                return out
            return values != 0
    raise _ColumnProblems([(None, f"a {values.dtype} tensor cannot feed a {kind} column")])


def _row_list(rows: np.ndarray, message: str) -> list[tuple[int | None, str]]:
    return [(int(r), message) for r in rows[:_MAX_PROBLEMS_PER_COLUMN]]


def _to_strings(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind != "O":
        # numbers or booleans given for a string column: their text
        out = np.empty(values.shape, dtype=object)
        out[:] = values.astype(str).tolist()
        return out
    bad: list[tuple[int | None, str]] = []
    out = np.empty(values.shape, dtype=object)
    for i, v in enumerate(values.tolist()):
        if isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError:
                if len(bad) < _MAX_PROBLEMS_PER_COLUMN:
                    bad.append((i, "not valid UTF-8 text"))
                continue
        elif not isinstance(v, str):
            v = str(v)
        out[i] = v
    if bad:
        raise _ColumnProblems(bad)
    return out


def _parse_cells(values: np.ndarray, kind: str) -> np.ndarray:
    """Parse BYTES cells (str/bytes) into a number, integer or boolean column."""
    if kind == "number":
        try:  # fast path: numpy calls float() per cell in C
            return values.astype(np.float64)
        except (ValueError, TypeError):
            pass
    elif kind == "integer":
        try:
            return values.astype(np.int64)
        except (ValueError, TypeError, OverflowError):
            pass
    items = values.tolist()
    bad: list[tuple[int | None, str]] = []
    parsed: list[Any] = []
    missing = False
    for i, v in enumerate(items):
        text = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
        text = text.strip()
        if text == "":
            parsed.append(None)
            missing = True
            continue
        value = _parse_cell(text, kind)
        if value is None:
            if len(bad) < _MAX_PROBLEMS_PER_COLUMN:
                bad.append((i, f"cannot parse {text[:40]!r} as {_ARTICLE[kind]}"))
            parsed.append(None)
            continue
        parsed.append(value)
        if kind != "boolean" and isinstance(value, float) and math.isnan(value):
            missing = True
    if bad:
        raise _ColumnProblems(bad)
    if kind == "number":
        return np.array([np.nan if p is None else p for p in parsed], dtype=np.float64)
    if kind == "integer":
        if missing:
            return np.array([np.nan if p is None else p for p in parsed], dtype=np.float64)
        return np.array(parsed, dtype=np.int64)
    if missing:
        out = np.empty(len(parsed), dtype=object)
        out[:] = parsed
        return out
    return np.array(parsed, dtype=bool)


_ARTICLE = {"number": "a number", "integer": "an integer", "boolean": "a boolean"}


def _parse_cell(text: str, kind: str) -> Any:
    if kind == "boolean":
        low = text.lower()
        if low in _TRUE_WORDS:
            return True
        if low in _FALSE_WORDS:
            return False
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    if kind == "number":
        return number
    if math.isnan(number):
        return number  # missing
    try:
        whole = int(text)
    except ValueError:
        if not math.isfinite(number) or number != math.trunc(number):
            return None
        whole = int(number)
    if not -(2**63) <= whole < 2**63:
        return None
    return whole
