"""Open Inference Protocol V2: one tensor's data, from binary bytes or from JSON `data`.

Every problem raises `Bad` naming the tensor; `decode_request` collects them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from relevo.server.v2_types import LEN, NATIVE_DTYPES, WIRE_DTYPES, Bad


def decode_binary(
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
    wire = WIRE_DTYPES[datatype]
    expected = count * wire.itemsize
    if size != expected:
        raise Bad(
            f"{label}: binary_data_size is {size} but {count} {datatype} values take "
            f"{expected} bytes",
            name,
        )
    if datatype == "BOOL":
        return np.frombuffer(body, dtype=np.uint8, count=count, offset=offset) != 0
    # copy: aligned, native byte order and writable (frombuffer over bytes is read-only)
    return np.frombuffer(body, dtype=wire, count=count, offset=offset).astype(
        NATIVE_DTYPES[datatype], copy=True
    )


def _decode_bytes_elements(
    body: bytes, offset: int, size: int, count: int, label: str, name: str
) -> np.ndarray:
    if count > size // 4:
        raise Bad(
            f"{label}: {count} BYTES elements need at least {4 * count} bytes but "
            f"binary_data_size is {size}",
            name,
        )
    end = offset + size
    pos = offset
    unpack = LEN.unpack_from
    chunks: list[bytes] = []
    append = chunks.append
    for i in range(count):
        if pos + 4 > end:
            raise Bad(
                f"{label}: BYTES data ends after {i} of {count} elements "
                "(each element is a 4-byte little-endian length followed by its bytes)",
                name,
            )
        start = pos + 4
        pos = start + unpack(body, pos)[0]
        if pos > end:
            raise Bad(
                f"{label}: BYTES element {i} declares {pos - start} bytes but only "
                f"{end - start} remain in its binary_data_size",
                name,
            )
        append(body[start:pos])
    if pos != end:
        raise Bad(
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


def decode_json_data(data: Any, datatype: str, count: int, label: str, name: str) -> np.ndarray:
    if not isinstance(data, list):
        data = [data]  # a lone scalar
    if datatype == "BYTES":
        return _decode_json_strings(data, count, label, name)
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError):
        raise Bad(f"{label}: 'data' is a ragged nested list", name) from None
    if arr.size != count:
        raise Bad(f"{label}: shape needs {count} values but 'data' has {arr.size}", name)
    native = NATIVE_DTYPES[datatype]
    kind = arr.dtype.kind
    if native.kind == "f":
        if kind in "iuf":
            return arr.astype(native).reshape(-1)
        if kind == "O":  # null stands for NaN (JSON has no NaN; orjson writes null)
            flat = arr.reshape(-1)
            if all(v is None or (type(v) in (int, float)) for v in flat):
                return np.array([np.nan if v is None else v for v in flat], dtype=native)
        raise Bad(f"{label}: {datatype} data must be numbers", name)
    if native.kind in "iu":
        if kind == "f":
            if not np.all(np.isfinite(arr)) or not np.all(arr == np.trunc(arr)):
                raise Bad(f"{label}: {datatype} data must be integers", name)
        elif kind not in "iu" and arr.size:
            raise Bad(f"{label}: {datatype} data must be integers", name)
        if arr.size:
            info = np.iinfo(native)
            lo, hi = arr.min(), arr.max()
            if lo < info.min or hi > info.max:
                raise Bad(
                    f"{label}: values out of range for {datatype} ({info.min}..{info.max})",
                    name,
                )
        return arr.astype(native).reshape(-1)
    # BOOL
    if kind == "b" or arr.size == 0:
        return arr.astype(bool).reshape(-1)
    if kind in "iu" and np.all((arr == 0) | (arr == 1)):
        return arr.astype(bool).reshape(-1)
    raise Bad(f"{label}: BOOL data must be true or false", name)


def _decode_json_strings(data: list[Any], count: int, label: str, name: str) -> np.ndarray:
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:  # iterative flatten: no recursion limit on deep nesting
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            if item is not None and not isinstance(item, str):  # null: a missing value
                raise Bad(f"{label}: BYTES data must be strings or null, got {item!r}", name)
            flat.append(item)
        else:
            stack.pop()
    if len(flat) != count:
        raise Bad(f"{label}: shape needs {count} values but 'data' has {len(flat)}", name)
    out = np.empty(count, dtype=object)
    out[:] = flat
    return out
