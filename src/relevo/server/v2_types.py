"""Open Inference Protocol V2 (KServe v2 / Triton HTTP REST): the data model and datatypes.

Wire format (binary tensor data extension): the body is a JSON object, optionally followed by
raw tensor bytes. Each input whose parameters carry `binary_data_size: N` takes the next N
bytes, in input order. Numbers are little-endian, row-major, unpadded; BOOL is one byte per
element; BYTES is, per element, a 4-byte little-endian length followed by the bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from relevo.errors import InvalidInputError, Problem, RelevoError

#: V2 datatype -> little-endian numpy dtype of its binary form (BYTES: object)
WIRE_DTYPES: dict[str, np.dtype[Any]] = {
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
NATIVE_DTYPES: dict[str, np.dtype[Any]] = {
    name: dt.newbyteorder("=") for name, dt in WIRE_DTYPES.items()
}
DATATYPES: tuple[str, ...] = tuple(WIRE_DTYPES)
COLUMN_KINDS: tuple[str, ...] = ("number", "integer", "boolean", "string")

_INT_BY_SIZE = {1: "INT8", 2: "INT16", 4: "INT32", 8: "INT64"}
_UINT_BY_SIZE = {1: "UINT8", 2: "UINT16", 4: "UINT32", 8: "UINT64"}
_FLOAT_BY_SIZE = {2: "FP16", 4: "FP32", 8: "FP64"}
LEN = struct.Struct("<I")


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


class Bad(Exception):
    """Internal: one problem with one tensor or field; collected into an InvalidInputError."""

    def __init__(self, message: str, column: str | None) -> None:
        super().__init__(message)
        self.problem = Problem(message, column=column)


def invalid(message: str, problems: list[Problem]) -> InvalidInputError:
    return InvalidInputError(message, problems)


# ------------------------------------------------------------------------------- datatypes


def numpy_dtype_of(datatype: str) -> np.dtype[Any]:
    """The (native byte order) numpy dtype of a V2 datatype; BYTES maps to object."""
    try:
        return NATIVE_DTYPES[datatype]
    except (KeyError, TypeError):
        raise invalid(
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
