"""Open Inference Protocol V2: encoding an inference response, JSON or binary tensor data."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from relevo.errors import RelevoError
from relevo.server.v2_types import LEN, NATIVE_DTYPES, WIRE_DTYPES, datatype_of


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
            wire = WIRE_DTYPES[datatype]
            blob = np.ascontiguousarray(arr, dtype=wire).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = np.ascontiguousarray(arr.reshape(-1), dtype=NATIVE_DTYPES[datatype])
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
    pack = LEN.pack
    for x in items:
        b = x.encode("utf-8") if isinstance(x, str) else x
        parts.append(pack(len(b)))
        parts.append(b)
    return b"".join(parts)
