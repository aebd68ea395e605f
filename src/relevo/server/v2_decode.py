"""Open Inference Protocol V2: decoding an inference request (the JSON header, then the data).

Pure and transport-free: bytes in, dataclasses and numpy arrays out. The HTTP layer passes the
body and the value of the `Inference-Header-Content-Length` header. Every problem with a
request raises `InvalidInputError` whose problems name the tensor (or the field) at fault; a
request is checked whole, so one error lists every bad input.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from relevo.errors import PayloadTooLargeError, Problem
from relevo.server.v2_data import decode_binary, decode_json_data
from relevo.server.v2_types import (
    DATATYPES,
    WIRE_DTYPES,
    Bad,
    RequestedOutput,
    V2Request,
    V2Tensor,
    invalid,
)


def decode_request(
    body: bytes, header_length: int | None, *, max_rows: int | None = None
) -> V2Request:
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
                raise invalid(
                    "invalid Inference-Header-Content-Length",
                    [Problem(f"not an integer: {header_length!r}", column="header_length")],
                ) from None
        if not 0 <= header_length <= total:
            raise invalid(
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
        raise invalid(
            "invalid inference request",
            [Problem("the request body must be a JSON object", column="body")],
        )

    if max_rows is not None:
        _check_rows(doc.get("inputs"), max_rows)

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
        except Bad as bad:
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
        raise invalid("invalid inference request", problems)
    return V2Request(
        id=request_id,
        inputs=inputs,
        outputs=outputs,
        parameters=parameters,
        binary_output_default=binary_default,
    )


def _is_text(data: bytes | memoryview) -> bool:
    try:
        bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in data


def _check_rows(raw_inputs: Any, max_rows: int) -> None:
    """Refuse (413) a request whose declared shapes carry more rows than `max_rows`, before
    any tensor data is decoded (the shapes are in the JSON header)."""
    if not isinstance(raw_inputs, list):
        return
    for raw in raw_inputs:
        shape = raw.get("shape") if isinstance(raw, dict) else None
        if not isinstance(shape, list) or not shape:
            continue
        rows = shape[0]
        if isinstance(rows, int) and not isinstance(rows, bool) and rows > max_rows:
            name = raw.get("name")
            raise PayloadTooLargeError(
                f"the request has {rows:,} rows; at most {max_rows:,} are accepted per request "
                "(RELEVO_MAX_ROWS)",
                [Problem(f"shape {shape} declares {rows:,} rows", column=str(name))],
            )


def _parse_json(data: bytes | memoryview, whole_body: bool) -> Any:
    if not len(data):
        raise invalid(
            "the request body is empty",
            [
                Problem(
                    "send a V2 inference request: a JSON object with 'inputs', e.g. "
                    '{"inputs": [{"name": "age", "datatype": "FP64", "shape": [1], '
                    '"data": [42]}]}',
                    column="body",
                )
            ],
        )
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        first_error = str(exc)
    # Rare path: tritonclient (python-rapidjson) writes NaN/Infinity for non-finite floats in
    # JSON tensors, which orjson rejects as non-standard; the stdlib parser accepts them.
    try:
        doc = json.loads(bytes(data).decode("utf-8"))
    except (ValueError, RecursionError):
        pass
    else:
        if _text_throughout(doc):
            return doc
        # the stdlib takes "\ud800" alone, which no model, log or answer can hold as text;
        # the JSON API's parser refuses such a body, and so does this one
        message = (
            "the request body is not valid JSON: a \\ud800-\\udfff escape without its other "
            "half of a UTF-16 surrogate pair is no text"
        )
        raise invalid("invalid inference request", [Problem(message, column="body")])
    where = first_error[first_error.rfind(": line ") + 2 :] if ": line " in first_error else ""
    message = f"the request body is not valid JSON{f' ({where})' if where else ''}"
    if whole_body and ("after document" in first_error or not _is_text(data)):
        # a JSON object followed by bytes: binary tensor data sent without its header
        message += (
            "; a body with binary tensor data after the JSON needs the "
            "Inference-Header-Content-Length header"
        )
    raise invalid("invalid inference request", [Problem(message, column="body")])


def _text_throughout(doc: Any) -> bool:
    """Whether every string of a document the stdlib parsed is text (no lone surrogate)."""
    try:
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
        raise Bad(f"{where} must be an object", where)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise Bad(f"{where} has no 'name' (a non-empty string)", where)
    label = f"input {name!r}"

    datatype = raw.get("datatype")
    if not isinstance(datatype, str):
        raise Bad(f"{label} has no 'datatype'", name)
    if datatype not in WIRE_DTYPES:
        hint = " (not supported by relevo)" if datatype == "BF16" else ""
        raise Bad(
            f"{label} has unknown datatype {datatype!r}{hint}; "
            f"expected one of {', '.join(DATATYPES)}",
            name,
        )

    shape = raw.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise Bad(f"{label} needs 'shape', a list of non-negative integers; got {shape!r}", name)
    count = math.prod(shape)

    parameters = raw.get("parameters")
    if parameters is None:
        parameters = {}
    elif not isinstance(parameters, dict):
        raise Bad(f"{label}: 'parameters' must be an object", name)
    if "shared_memory_region" in parameters:
        raise Bad(f"{label} uses shared memory, which this server does not support", name)

    size = parameters.get("binary_data_size")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise Bad(f"{label}: binary_data_size must be a non-negative integer", name)
        if "data" in raw:
            raise Bad(f"{label} has both 'data' and binary_data_size", name)
        if header_length is None:
            raise Bad(
                f"{label} has binary_data_size but the request has no "
                "Inference-Header-Content-Length header",
                name,
            )
        if offset + size > total:
            raise Bad(
                f"{label} claims {size} bytes of binary data but only {max(total - offset, 0)} "
                "remain in the body",
                name,
            )
        data = decode_binary(body, offset, size, datatype, count, label, name)
        offset += size
    else:
        if "data" not in raw:
            raise Bad(f"{label} has no 'data' (and no binary_data_size)", name)
        data = decode_json_data(raw["data"], datatype, count, label, name)

    return V2Tensor(name, datatype, list(shape), data.reshape(shape), parameters), offset


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
