"""The Open Inference Protocol V2 codec, checked against the real tritonclient encoder/decoder."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import orjson
import pytest

from relevo.errors import InvalidInputError, RelevoError
from relevo.server.v2_columns import tensors_to_columns
from relevo.server.v2_decode import decode_request
from relevo.server.v2_encode import encode_response
from relevo.server.v2_types import (
    RequestedOutput,
    V2Request,
    V2Tensor,
    datatype_of,
    numpy_dtype_of,
)

httpclient = pytest.importorskip("tritonclient.http")
Client = httpclient.InferenceServerClient

RNG = np.random.default_rng(7)

SAMPLES: dict[str, np.ndarray] = {
    "FP32": RNG.standard_normal((4, 3)).astype(np.float32),
    "FP64": RNG.standard_normal((4, 3)),
    "FP16": RNG.standard_normal((2, 3)).astype(np.float16),
    "INT64": RNG.integers(-(2**62), 2**62, size=(4, 3), dtype=np.int64),
    "INT32": RNG.integers(-1000, 1000, size=(5,), dtype=np.int32),
    "UINT8": RNG.integers(0, 255, size=(2, 2), dtype=np.uint8),
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "BYTES": np.array([["alpha", "béta", ""], ["∑ü", "x" * 300, "z"]], dtype=object),
}


def _request(
    arrays: dict[str, tuple[np.ndarray, bool]],
    outputs: list[Any] | None = None,
    **kwargs: Any,
) -> tuple[bytes, int | None]:
    inputs = []
    for name, (arr, binary) in arrays.items():
        inp = httpclient.InferInput(name, list(arr.shape), datatype_of(arr))
        inp.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(inp)
    body, json_size = Client.generate_request_body(inputs, outputs=outputs, **kwargs)
    if isinstance(body, str):  # JSON-only bodies may come back as str in some versions
        body = body.encode()
    return body, json_size


def _raw(doc: dict[str, Any], binary: bytes = b"") -> tuple[bytes, int | None]:
    header = orjson.dumps(doc)
    if not binary:
        return header, None
    return header + binary, len(header)


def _fp32(name: str, values: list[float], **extra: Any) -> dict[str, Any]:
    return {"name": name, "datatype": "FP32", "shape": [len(values)], "data": values, **extra}


def _bad(body: bytes, header_length: int | None = None) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as info:
        decode_request(body, header_length)
    return info.value


def _bad_doc(doc: Any, binary: bytes = b"") -> InvalidInputError:
    header = json.dumps(doc).encode()  # stdlib: can write integers beyond 64 bits
    return _bad(header + binary, len(header) if binary else None)


def _columns_of(err: InvalidInputError) -> list[str | None]:
    return [p.column for p in err.problems]


def _expected_bytes(arr: np.ndarray) -> np.ndarray:
    return np.array(
        [x.decode() if isinstance(x, bytes) else x for x in arr.reshape(-1)], dtype=object
    ).reshape(arr.shape)


# ------------------------------------------------------------------ decode, real tritonclient


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_decode_tritonclient_round_trip(datatype: str, binary: bool) -> None:
    original = SAMPLES[datatype]
    body, json_size = _request({"t": (original, binary)})
    assert (json_size is not None) == binary

    req = decode_request(body, json_size)

    assert isinstance(req, V2Request)
    [tensor] = req.inputs
    assert isinstance(tensor, V2Tensor)
    assert (tensor.name, tensor.datatype, tensor.shape) == ("t", datatype, list(original.shape))
    assert tensor.data.shape == original.shape
    if datatype == "BYTES":
        assert tensor.data.dtype == object
        assert all(type(x) is str for x in tensor.data.flat)
        np.testing.assert_array_equal(tensor.data, original)
    else:
        assert tensor.data.dtype == original.dtype
        np.testing.assert_array_equal(tensor.data, original)
    if binary:
        assert tensor.parameters["binary_data_size"] == len(body) - json_size


def test_decode_several_inputs_mixed_binary_and_json_keep_their_order() -> None:
    arrays = {
        "a": (SAMPLES["FP32"], True),
        "b": (SAMPLES["BYTES"], True),
        "c": (SAMPLES["INT64"], False),
        "d": (SAMPLES["BOOL"], True),
        "e": (SAMPLES["FP64"], True),
    }
    body, json_size = _request(arrays)
    req = decode_request(body, json_size)
    assert [t.name for t in req.inputs] == list(arrays)
    for tensor, (original, _) in zip(req.inputs, arrays.values(), strict=True):
        np.testing.assert_array_equal(tensor.data, original)


def test_decode_binary_bytes_keeps_non_utf8_elements_as_bytes() -> None:
    original = np.array([b"ok", b"\xff\xfe", "é".encode()], dtype=object)
    body, json_size = _request({"s": (original, True)})
    data = decode_request(body, json_size).inputs[0].data
    assert data.tolist() == ["ok", b"\xff\xfe", "é"]


def test_decode_binary_bytes_from_numpy_bytes_dtype() -> None:
    original = np.array([b"one", b"two", b""], dtype=np.bytes_)
    body, json_size = _request({"s": (original, True)})
    assert decode_request(body, json_size).inputs[0].data.tolist() == ["one", "two", ""]


def test_decode_binary_arrays_are_writable_copies() -> None:
    body, json_size = _request({"x": (SAMPLES["FP64"], True)})
    data = decode_request(body, json_size).inputs[0].data
    assert data.flags.writeable and data.flags.c_contiguous and data.flags.aligned
    data[0, 0] = 42.0  # models may scale in place


def test_decode_large_binary_tensor() -> None:
    original = RNG.standard_normal((20_000, 50)).astype(np.float32)
    body, json_size = _request({"x": (original, True)})
    np.testing.assert_array_equal(decode_request(body, json_size).inputs[0].data, original)


@pytest.mark.parametrize("binary", [True, False])
def test_decode_empty_tensor(binary: bool) -> None:
    for datatype in ("FP32", "BYTES"):
        original = np.zeros((0, 3), dtype=numpy_dtype_of(datatype))
        body, json_size = _request({"t": (original, binary)})
        tensor = decode_request(body, json_size).inputs[0]
        assert tensor.data.shape == (0, 3)


def test_decode_requested_outputs_binary_flags() -> None:
    outputs = [
        httpclient.InferRequestedOutput("probabilities", binary_data=True),
        httpclient.InferRequestedOutput("label", binary_data=False),
        httpclient.InferRequestedOutput("top", binary_data=False, class_count=3),
    ]
    body, json_size = _request(
        {"x": (SAMPLES["FP32"], True)},
        outputs=outputs,
        request_id="req-42",
        parameters={"explain": True},
    )
    req = decode_request(body, json_size)
    assert req.id == "req-42"
    assert req.parameters == {"explain": True}
    assert req.binary_output_default is False
    assert req.outputs == [
        RequestedOutput("probabilities", True, {"binary_data": True}),
        RequestedOutput("label", False, {"binary_data": False}),
        RequestedOutput("top", False, {"classification": 3, "binary_data": False}),
    ]


def test_decode_without_outputs_tritonclient_asks_binary_for_all() -> None:
    # tritonclient sets parameters.binary_data_output=true when no outputs are listed
    body, json_size = _request({"x": (SAMPLES["FP32"], False)})
    req = decode_request(body, json_size)
    assert req.outputs == []
    assert req.binary_output_default is True
    assert req.parameters["binary_data_output"] is True
    assert req.id is None


def test_decode_output_default_from_binary_data_output() -> None:
    body, _ = _raw(
        {
            "inputs": [_fp32("x", [1.0])],
            "outputs": [{"name": "a"}, {"name": "b", "parameters": {"binary_data": False}}],
            "parameters": {"binary_data_output": True},
        }
    )
    req = decode_request(body, None)
    assert [(o.name, o.binary) for o in req.outputs] == [("a", True), ("b", False)]


def test_decode_tritonclient_json_nan_and_infinity() -> None:
    # tritonclient's JSON encoder (python-rapidjson) writes NaN / Infinity, which is not JSON
    original = np.array([np.nan, np.inf, -np.inf, 1.5], dtype=np.float32)
    body, json_size = _request({"x": (original, False)})
    assert b"NaN" in body and b"Infinity" in body
    np.testing.assert_array_equal(decode_request(body, json_size).inputs[0].data, original)


def test_decode_non_ascii_request_id_header_length_counts_bytes() -> None:
    body, json_size = _request({"x": (SAMPLES["FP32"], True)}, request_id="réq-✓")
    req = decode_request(body, json_size)
    assert req.id == "réq-✓"
    np.testing.assert_array_equal(req.inputs[0].data, SAMPLES["FP32"])


def test_decode_accepts_bytearray_memoryview_and_string_header_length() -> None:
    body, json_size = _request({"x": (SAMPLES["FP64"], True)})
    for variant in (bytearray(body), memoryview(body)):
        req = decode_request(variant, json_size)  # type: ignore[arg-type]
        np.testing.assert_array_equal(req.inputs[0].data, SAMPLES["FP64"])
    req = decode_request(body, str(json_size))  # type: ignore[arg-type]
    np.testing.assert_array_equal(req.inputs[0].data, SAMPLES["FP64"])


# ------------------------------------------------------------------ decode, hand-written JSON


def test_decode_hand_written_json_nested_and_flat() -> None:
    body, _ = _raw(
        {
            "id": "abc",
            "inputs": [
                {
                    "name": "nested",
                    "datatype": "FP64",
                    "shape": [2, 3],
                    "data": [[1, 2, 3], [4, 5.5, 6]],
                },
                {"name": "flat", "datatype": "INT32", "shape": [2, 2], "data": [1, 2, 3, 4]},
                {"name": "flags", "datatype": "BOOL", "shape": [3], "data": [True, False, True]},
                {"name": "words", "datatype": "BYTES", "shape": [2, 1], "data": [["hi"], ["yo"]]},
                {"name": "flat_words", "datatype": "BYTES", "shape": [1, 2], "data": ["a", "b"]},
                {"name": "scalar", "datatype": "FP32", "shape": [], "data": 2.5},
                {"name": "one", "datatype": "INT64", "shape": [1], "data": [7]},
            ],
        }
    )
    req = decode_request(body, None)
    t = {x.name: x.data for x in req.inputs}
    np.testing.assert_array_equal(t["nested"], np.array([[1, 2, 3], [4, 5.5, 6]]))
    assert t["nested"].dtype == np.float64
    np.testing.assert_array_equal(t["flat"], np.array([[1, 2], [3, 4]], dtype=np.int32))
    assert t["flat"].dtype == np.int32
    np.testing.assert_array_equal(t["flags"], [True, False, True])
    assert t["flags"].dtype == bool
    assert t["words"].tolist() == [["hi"], ["yo"]]
    assert t["flat_words"].tolist() == [["a", "b"]]
    assert t["scalar"].shape == () and float(t["scalar"]) == 2.5
    assert t["one"].tolist() == [7]
    assert req.id == "abc" and req.outputs == [] and req.parameters == {}
    assert req.binary_output_default is False


def test_decode_json_lenient_but_exact_conversions() -> None:
    body, _ = _raw(
        {
            "inputs": [
                {"name": "i", "datatype": "INT64", "shape": [3], "data": [1.0, 2, -3.0]},
                {"name": "f", "datatype": "FP32", "shape": [3], "data": [1, None, 2.5]},
                {"name": "b", "datatype": "BOOL", "shape": [2], "data": [0, 1]},
                {"name": "u", "datatype": "UINT64", "shape": [1], "data": [2**64 - 1]},
            ]
        }
    )
    t = {x.name: x.data for x in decode_request(body, None).inputs}
    assert t["i"].tolist() == [1, 2, -3] and t["i"].dtype == np.int64
    assert t["f"][0] == 1 and np.isnan(t["f"][1]) and t["f"][2] == 2.5
    assert t["b"].tolist() == [False, True]
    assert t["u"].tolist() == [2**64 - 1]


def test_decode_hand_written_binary_with_bytes_and_bool() -> None:
    words = [b"hello", "wörld".encode()]
    blob_s = b"".join(struct.pack("<I", len(w)) + w for w in words)
    blob_b = bytes([1, 0, 2])  # any non-zero byte is true
    blob_f = np.array([1.5, -2.0], dtype="<f8").tobytes()
    doc = {
        "inputs": [
            {
                "name": "s",
                "datatype": "BYTES",
                "shape": [2],
                "parameters": {"binary_data_size": len(blob_s)},
            },
            {"name": "b", "datatype": "BOOL", "shape": [3], "parameters": {"binary_data_size": 3}},
            {"name": "j", "datatype": "INT8", "shape": [2], "data": [-1, 1]},
            {"name": "f", "datatype": "FP64", "shape": [2], "parameters": {"binary_data_size": 16}},
        ]
    }
    body, n = _raw(doc, blob_s + blob_b + blob_f)
    t = {x.name: x.data for x in decode_request(body, n).inputs}
    assert t["s"].tolist() == ["hello", "wörld"]
    assert t["b"].tolist() == [True, False, True]
    assert t["j"].tolist() == [-1, 1]
    assert t["f"].tolist() == [1.5, -2.0]


# ---------------------------------------------------------------------------- decode errors


def test_error_not_json_says_where_in_the_users_terms() -> None:
    err = _bad(b"{not json")
    assert "the request body is not valid JSON (line 1 column 2" in str(err)
    # plain bad JSON is not about binary tensors: no header talk, no parser jargon
    assert "Inference-Header-Content-Length" not in str(err)
    assert "unexpected character" not in str(err)
    assert _columns_of(err) == ["body"]


def test_error_empty_body_says_what_to_send() -> None:
    err = _bad(b"")
    assert "the request body is empty" in str(err)
    assert "'inputs'" in str(err)
    assert "binary" not in str(err) and "header" not in str(err).lower()


def test_nan_literal_in_json_data_is_a_missing_number() -> None:
    body = b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [2], "data": [1.5, NaN]}]}'
    x = decode_request(body, None).inputs[0].data
    assert x[0] == 1.5 and np.isnan(x[1])


def test_declared_rows_over_the_limit_are_refused_before_decoding() -> None:
    from relevo.errors import PayloadTooLargeError

    # the shape claims 50,000 rows; the data is not even there: the shape alone decides
    body = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "FP64", "shape": [50_000], "data": [1.0]}]}
    )
    with pytest.raises(PayloadTooLargeError) as info:
        decode_request(body, None, max_rows=10_000)
    assert "50,000 rows" in str(info.value) and "10,000" in str(info.value)
    assert "RELEVO_MAX_ROWS" in str(info.value)
    # under a higher limit the same request gets past the row check to its real problem
    with pytest.raises(InvalidInputError) as within:
        decode_request(body, None, max_rows=100_000)
    assert not isinstance(within.value, PayloadTooLargeError)
    assert "50000 values" in str(within.value)


def test_error_binary_body_without_header_length() -> None:
    body, _ = _request({"x": (SAMPLES["FP32"], True)})
    err = _bad(body, None)
    assert "Inference-Header-Content-Length" in str(err)


def test_error_json_not_an_object() -> None:
    assert _columns_of(_bad(b"[1, 2]")) == ["body"]


@pytest.mark.parametrize(
    "doc",
    [{}, {"inputs": []}, {"inputs": {"name": "x"}}],
    ids=["absent", "empty", "not-a-list"],
)
def test_error_inputs_missing(doc: dict[str, Any]) -> None:
    assert "inputs" in _columns_of(_bad_doc(doc))


@pytest.mark.parametrize(
    ("tensor", "column", "fragment"),
    [
        ({"datatype": "FP32", "shape": [1], "data": [1]}, "inputs[0]", "name"),
        ("x", "inputs[0]", "must be an object"),
        ({"name": "x", "shape": [1], "data": [1]}, "x", "datatype"),
        ({"name": "x", "datatype": "FLOAT", "shape": [1], "data": [1]}, "x", "unknown datatype"),
        ({"name": "x", "datatype": "BF16", "shape": [1], "data": [1]}, "x", "BF16"),
        ({"name": "x", "datatype": "FP32", "data": [1]}, "x", "shape"),
        ({"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}, "x", "shape"),
        ({"name": "x", "datatype": "FP32", "shape": ["2"], "data": [1]}, "x", "shape"),
        ({"name": "x", "datatype": "FP32", "shape": [1]}, "x", "no 'data'"),
        ({"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2]}, "x", "needs 3 values"),
        ({"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3]]}, "x", "ragged"),
        ({"name": "x", "datatype": "FP32", "shape": [2], "data": ["1", "2"]}, "x", "numbers"),
        ({"name": "x", "datatype": "FP32", "shape": [2], "data": [True, False]}, "x", "numbers"),
        ({"name": "x", "datatype": "FP32", "shape": [1], "data": [{"a": 1}]}, "x", "numbers"),
        ({"name": "x", "datatype": "INT64", "shape": [2], "data": [1.5, 2]}, "x", "integers"),
        ({"name": "x", "datatype": "INT64", "shape": [1], "data": ["7"]}, "x", "integers"),
        ({"name": "x", "datatype": "INT64", "shape": [1], "data": [None]}, "x", "integers"),
        ({"name": "x", "datatype": "UINT8", "shape": [2], "data": [1, 256]}, "x", "out of range"),
        ({"name": "x", "datatype": "UINT8", "shape": [1], "data": [-1]}, "x", "out of range"),
        ({"name": "x", "datatype": "INT64", "shape": [1], "data": [2**70]}, "x", "out of range"),
        ({"name": "x", "datatype": "BOOL", "shape": [2], "data": [2, 0]}, "x", "true or false"),
        ({"name": "x", "datatype": "BOOL", "shape": [1], "data": ["true"]}, "x", "true or false"),
        ({"name": "x", "datatype": "BYTES", "shape": [2], "data": ["a", 1]}, "x", "strings"),
        ({"name": "x", "datatype": "BYTES", "shape": [2], "data": ["a", True]}, "x", "strings"),
        ({"name": "x", "datatype": "BYTES", "shape": [3], "data": ["a", "b"]}, "x", "needs 3"),
        (
            {"name": "x", "datatype": "FP32", "shape": [1], "data": [1], "parameters": [1]},
            "x",
            "parameters",
        ),
        (
            {
                "name": "x",
                "datatype": "FP32",
                "shape": [1],
                "parameters": {"shared_memory_region": "r"},
            },
            "x",
            "shared memory",
        ),
    ],
)
def test_error_bad_input_tensor(tensor: Any, column: str, fragment: str) -> None:
    err = _bad_doc({"inputs": [tensor]})
    assert _columns_of(err) == [column]
    assert fragment in str(err)
    assert column in err.problems[0].message


def test_a_null_in_bytes_data_is_a_missing_value() -> None:
    """JSON data may say "missing" with null in a BYTES tensor: a string column gets None (the
    JSON API's null) while "" stays the empty text; a number column reads both as NaN."""
    doc = {"inputs": [{"name": "s", "datatype": "BYTES", "shape": [3], "data": ["a", None, ""]}]}
    tensor = decode_request(orjson.dumps(doc), None).inputs[0]
    assert tensor.data.tolist() == ["a", None, ""]
    assert tensors_to_columns([tensor], [("s", "string")])["s"].tolist() == ["a", None, ""]
    tensor.data = np.array(["1.5", None, ""], dtype=object)
    numbers = tensors_to_columns([tensor], [("s", "number")])["s"]
    assert numbers[0] == 1.5 and np.isnan(numbers[1]) and np.isnan(numbers[2])


def test_error_huge_shape_does_not_allocate() -> None:
    doc = {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [10**9, 10**9], "data": []}]}
    assert _columns_of(_bad_doc(doc)) == ["x"]
    blob = b"\x00" * 8
    doc = {
        "inputs": [
            {
                "name": "x",
                "datatype": "BYTES",
                "shape": [10**12],
                "parameters": {"binary_data_size": 8},
            }
        ]
    }
    assert "at least" in str(_bad_doc(doc, blob))


def test_error_binary_size_does_not_match_shape() -> None:
    blob = np.zeros(3, dtype="<f4").tobytes()
    doc = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [4], "parameters": {"binary_data_size": 12}}
        ]
    }
    err = _bad_doc(doc, blob)
    assert _columns_of(err) == ["x"]
    assert "binary_data_size is 12" in str(err) and "16 bytes" in str(err)


def test_error_binary_size_beyond_body() -> None:
    doc = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [4], "parameters": {"binary_data_size": 16}}
        ]
    }
    err = _bad_doc(doc, b"\x00" * 8)
    assert _columns_of(err) == ["x"] and "remain" in str(err)


def test_error_truncated_tritonclient_body() -> None:
    body, json_size = _request({"x": (SAMPLES["FP32"], True), "y": (SAMPLES["INT64"], True)})
    err = _bad(body[:-5], json_size)
    assert _columns_of(err) == ["y"]


def test_error_trailing_binary_bytes() -> None:
    body, json_size = _request({"x": (SAMPLES["FP32"], True)})
    err = _bad(body + b"junk", json_size)
    assert "4 bytes" in str(err) and "belong to no input" in str(err)


def test_error_binary_data_size_without_header_length() -> None:
    doc = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}}
        ]
    }
    err = _bad(orjson.dumps(doc), None)
    assert _columns_of(err) == ["x"] and "Inference-Header-Content-Length" in str(err)


@pytest.mark.parametrize("size", [-1, 1.5, True, "4"])
def test_error_binary_data_size_not_an_integer(size: Any) -> None:
    doc = {
        "inputs": [
            {
                "name": "x",
                "datatype": "FP32",
                "shape": [1],
                "parameters": {"binary_data_size": size},
            }
        ]
    }
    err = _bad_doc(doc, b"\x00" * 4)
    assert "x" in _columns_of(err)


def test_error_data_and_binary_data_size_together() -> None:
    doc = {
        "inputs": [
            {
                "name": "x",
                "datatype": "FP32",
                "shape": [1],
                "data": [1.0],
                "parameters": {"binary_data_size": 4},
            }
        ]
    }
    assert "both" in str(_bad_doc(doc, b"\x00" * 4))


@pytest.mark.parametrize("header_length", [-1, 10_000, "abc"])
def test_error_bad_header_length(header_length: Any) -> None:
    body, _ = _raw({"inputs": [_fp32("x", [1.0])]})
    err = _bad(body, header_length)
    assert _columns_of(err) == ["header_length"]


def test_error_header_length_cutting_json() -> None:
    body, json_size = _request({"x": (SAMPLES["FP32"], True)})
    assert _columns_of(_bad(body, json_size - 3)) == ["body"]


@pytest.mark.parametrize(
    ("blob", "fragment"),
    [
        (struct.pack("<I", 3) + b"abc" + b"\x01\x00", "ends after 1 of 2"),  # half a length
        (struct.pack("<I", 3) + b"abc" + struct.pack("<I", 50) + b"xy", "declares 50 bytes"),
        (struct.pack("<I", 1) + b"a" + struct.pack("<I", 1) + b"b" + b"\x00\x00\x00\x00", "take"),
    ],
    ids=["truncated-length", "element-overflow", "leftover"],
)
def test_error_bad_bytes_encoding(blob: bytes, fragment: str) -> None:
    doc = {
        "inputs": [
            {
                "name": "s",
                "datatype": "BYTES",
                "shape": [2],
                "parameters": {"binary_data_size": len(blob)},
            }
        ]
    }
    err = _bad_doc(doc, blob)
    assert _columns_of(err) == ["s"]
    assert fragment in str(err)


def test_error_duplicate_inputs_and_outputs() -> None:
    err = _bad_doc(
        {
            "inputs": [_fp32("x", [1.0]), _fp32("x", [2.0])],
            "outputs": [{"name": "y"}, {"name": "y"}],
        }
    )
    assert _columns_of(err) == ["x", "y"]


@pytest.mark.parametrize(
    ("doc_extra", "column"),
    [
        ({"outputs": {"name": "y"}}, "outputs"),
        ({"outputs": [{"parameters": {}}]}, "outputs[0]"),
        ({"outputs": [{"name": "y", "parameters": {"binary_data": "yes"}}]}, "y"),
        ({"outputs": [{"name": "y", "parameters": "binary"}]}, "y"),
        ({"parameters": {"binary_data_output": 1}}, "binary_data_output"),
        ({"parameters": [1]}, "parameters"),
        ({"id": 12}, "id"),
    ],
)
def test_error_bad_request_fields(doc_extra: dict[str, Any], column: str) -> None:
    err = _bad_doc({"inputs": [_fp32("x", [1.0])], **doc_extra})
    assert _columns_of(err) == [column]


def test_error_lists_every_bad_input_and_keeps_binary_offsets() -> None:
    good = np.array([1.5, 2.5], dtype="<f4").tobytes()
    doc = {
        "inputs": [
            {"name": "a", "datatype": "FP32", "shape": [3], "parameters": {"binary_data_size": 8}},
            {"name": "b", "datatype": "NOPE", "shape": [1], "data": [1]},
            {"name": "c", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}},
            {"name": "d", "datatype": "INT32", "shape": [2], "data": [1]},
        ]
    }
    err = _bad_doc(doc, good + good)
    assert _columns_of(err) == ["a", "b", "d"]  # c, after the bad a, still decodes fine
    text = str(err)
    assert "'a'" in text and "'b'" in text and "'d'" in text


# ---------------------------------------------------------------------------------- encode


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_encode_parsed_by_tritonclient(datatype: str, binary: bool) -> None:
    original = SAMPLES[datatype]
    body, header_length = encode_response(
        model_name="churn",
        model_version="3",
        request_id="r-1",
        outputs=[("out", original, binary)],
    )
    assert (header_length is not None) == binary
    result = Client.parse_response_body(body, header_length=header_length)
    got = result.as_numpy("out")
    assert got.shape == original.shape
    response = result.get_response()
    assert response["model_name"] == "churn"
    assert response["model_version"] == "3"
    assert response["id"] == "r-1"
    assert response["outputs"][0]["datatype"] == datatype
    if datatype == "BYTES":
        # tritonclient returns bytes for binary BYTES outputs and str for JSON ones
        expected = np.vectorize(str.encode, otypes=[object])(original) if binary else original
        np.testing.assert_array_equal(got, expected)
    else:
        assert got.dtype == original.dtype
        np.testing.assert_array_equal(got, original)


def test_encode_several_outputs_mixed() -> None:
    outs = [
        ("p", SAMPLES["FP64"], True),
        ("label", np.array(["yes", "no", "yes"], dtype=object), False),
        ("raw", np.array([b"\x00\x01", b""], dtype=object), True),
        ("ok", SAMPLES["BOOL"], True),
        ("n", SAMPLES["INT64"], False),
    ]
    body, header_length = encode_response(
        model_name="m", model_version=None, request_id=None, outputs=outs
    )
    result = Client.parse_response_body(body, header_length=header_length)
    np.testing.assert_array_equal(result.as_numpy("p"), SAMPLES["FP64"])
    assert result.as_numpy("label").tolist() == ["yes", "no", "yes"]
    assert result.as_numpy("raw").tolist() == [b"\x00\x01", b""]
    np.testing.assert_array_equal(result.as_numpy("ok"), SAMPLES["BOOL"])
    np.testing.assert_array_equal(result.as_numpy("n"), SAMPLES["INT64"])
    header = orjson.loads(body[:header_length])
    assert "model_version" not in header and "id" not in header
    sizes = [o.get("parameters", {}).get("binary_data_size") for o in header["outputs"]]
    assert sum(s for s in sizes if s) == len(body) - header_length


def test_encode_json_only_is_plain_json() -> None:
    body, header_length = encode_response(
        model_name="m",
        model_version="1",
        request_id="x",
        outputs=[("y", np.array([[1.0, 2.0], [3.0, 4.0]]), False)],
        parameters={"drift": False},
    )
    assert header_length is None
    assert orjson.loads(body) == {
        "model_name": "m",
        "model_version": "1",
        "id": "x",
        "parameters": {"drift": False},
        "outputs": [
            {"name": "y", "datatype": "FP64", "shape": [2, 2], "data": [1.0, 2.0, 3.0, 4.0]}
        ],
    }


def test_encode_non_contiguous_big_endian_and_scalar() -> None:
    big = np.arange(12, dtype=">f8").reshape(3, 4)[:, ::2]
    scalar = np.array(3.5, dtype=np.float32)
    for binary in (True, False):
        body, n = encode_response(
            model_name="m",
            model_version=None,
            request_id=None,
            outputs=[("big", big, binary), ("s", scalar, binary)],
        )
        result = Client.parse_response_body(body, header_length=n)
        np.testing.assert_array_equal(result.as_numpy("big"), big)
        assert result.as_numpy("s").shape == () and float(result.as_numpy("s")) == 3.5


def test_encode_strings_from_unicode_bytes_and_objects() -> None:
    outs = [
        ("u", np.array(["a", "bé"]), False),
        ("s", np.array([b"x", b"yz"]), False),
        ("o", np.array([1, 2.5, None, "t"], dtype=object), False),
    ]
    body, n = encode_response(model_name="m", model_version=None, request_id=None, outputs=outs)
    result = Client.parse_response_body(body, header_length=n)
    assert result.as_numpy("u").tolist() == ["a", "bé"]
    assert result.as_numpy("s").tolist() == ["x", "yz"]
    assert result.as_numpy("o").tolist() == ["1", "2.5", "", "t"]
    body, n = encode_response(
        model_name="m",
        model_version=None,
        request_id=None,
        outputs=[(name, arr, True) for name, arr, _ in outs],
    )
    result = Client.parse_response_body(body, header_length=n)
    assert result.as_numpy("u").tolist() == [b"a", "bé".encode()]


def test_encode_non_finite_floats_in_json_become_null() -> None:
    arr = np.array([np.nan, 1.0, np.inf], dtype=np.float32)
    body, n = encode_response(
        model_name="m", model_version=None, request_id=None, outputs=[("y", arr, False)]
    )
    assert n is None and orjson.loads(body)["outputs"][0]["data"] == [None, 1.0, None]
    got = Client.parse_response_body(body).as_numpy("y")
    assert np.isnan(got[0]) and got[1] == 1.0
    # binary keeps them exact
    body, n = encode_response(
        model_name="m", model_version=None, request_id=None, outputs=[("y", arr, True)]
    )
    np.testing.assert_array_equal(
        Client.parse_response_body(body, header_length=n).as_numpy("y"), arr
    )


def test_encode_non_utf8_bytes_fall_back_to_binary() -> None:
    arr = np.array([b"\xff", b"ok"], dtype=object)
    body, n = encode_response(
        model_name="m", model_version=None, request_id=None, outputs=[("y", arr, False)]
    )
    assert n is not None
    assert Client.parse_response_body(body, header_length=n).as_numpy("y").tolist() == [
        b"\xff",
        b"ok",
    ]


def test_encode_empty_outputs() -> None:
    for binary in (True, False):
        body, n = encode_response(
            model_name="m",
            model_version=None,
            request_id=None,
            outputs=[
                ("e", np.zeros((0, 2), np.float32), binary),
                ("s", np.array([], object), binary),
            ],
        )
        result = Client.parse_response_body(body, header_length=n)
        assert result.as_numpy("e").shape == (0, 2)
        assert result.as_numpy("s").shape == (0,)


def test_encode_round_trip_through_decode() -> None:
    """Our own response body, reread as a request body, gives the same tensors back."""
    arrays = {name: SAMPLES[name] for name in ("FP32", "INT64", "BOOL", "BYTES")}
    body, n = encode_response(
        model_name="m",
        model_version=None,
        request_id=None,
        outputs=[(k, v, i % 2 == 0) for i, (k, v) in enumerate(arrays.items())],
    )
    doc = orjson.loads(body[:n])
    doc["inputs"] = doc.pop("outputs")
    del doc["model_name"]
    header = orjson.dumps(doc)
    req = decode_request(header + body[n:], len(header))
    for tensor in req.inputs:
        np.testing.assert_array_equal(tensor.data, arrays[tensor.name])


def test_encode_unrepresentable_output_is_a_relevo_error() -> None:
    with pytest.raises(RelevoError):
        encode_response(
            model_name="m",
            model_version=None,
            request_id=None,
            outputs=[("c", np.array([1 + 2j]), False)],
        )
    with pytest.raises(RelevoError):
        encode_response(
            model_name="m",
            model_version=None,
            request_id=None,
            outputs=[("y", np.array([1.0]), False)],
            parameters={"bad": object()},
        )


# -------------------------------------------------------------------------------- datatypes


@pytest.mark.parametrize(
    ("dtype", "datatype"),
    [
        (np.float64, "FP64"),
        (np.float32, "FP32"),
        (np.float16, "FP16"),
        (np.int64, "INT64"),
        (np.int32, "INT32"),
        (np.int16, "INT16"),
        (np.int8, "INT8"),
        (np.uint64, "UINT64"),
        (np.uint32, "UINT32"),
        (np.uint16, "UINT16"),
        (np.uint8, "UINT8"),
        (np.bool_, "BOOL"),
        (object, "BYTES"),
        (np.str_, "BYTES"),
        (np.bytes_, "BYTES"),
    ],
)
def test_datatype_of_and_back(dtype: Any, datatype: str) -> None:
    assert datatype_of(np.zeros(2, dtype=dtype)) == datatype
    if datatype != "BYTES":
        assert numpy_dtype_of(datatype) == np.dtype(dtype)
        from tritonclient.utils import np_to_triton_dtype, triton_to_np_dtype

        assert np_to_triton_dtype(np.dtype(dtype)) == datatype
        assert np.dtype(triton_to_np_dtype(datatype)) == np.dtype(dtype)
    else:
        assert numpy_dtype_of(datatype) == np.dtype(object)


def test_datatype_errors() -> None:
    with pytest.raises(InvalidInputError, match="FLOAT"):
        numpy_dtype_of("FLOAT")
    with pytest.raises(RelevoError, match="complex"):
        datatype_of(np.zeros(1, dtype=np.complex128))
    with pytest.raises(RelevoError):
        datatype_of(np.zeros(1, dtype="datetime64[s]"))


# --------------------------------------------------------------------------------- columns

SIGNATURE = [("age", "integer"), ("income", "number"), ("member", "boolean"), ("city", "string")]


def _t(name: str, data: Any, datatype: str | None = None) -> V2Tensor:
    arr = np.asarray(data, dtype=object) if datatype == "BYTES" else np.asarray(data)
    return V2Tensor(name, datatype or datatype_of(arr), list(arr.shape), arr, {})


def test_columns_one_tensor_per_feature() -> None:
    inputs = [
        _t("city", [["Oslo"], ["Lima"], ["Pune"]], "BYTES"),  # [n, 1]
        _t("income", np.array([1.5, 2.5, 3.5], dtype=np.float32)),
        _t("age", np.array([30, 40, 50], dtype=np.int32)),
        _t("member", np.array([True, False, True])),
    ]
    cols = tensors_to_columns(inputs, SIGNATURE)
    assert list(cols) == ["age", "income", "member", "city"]
    assert cols["age"].dtype == np.int64 and cols["age"].tolist() == [30, 40, 50]
    assert cols["income"].dtype == np.float64 and cols["income"].tolist() == [1.5, 2.5, 3.5]
    assert cols["member"].dtype == bool and cols["member"].tolist() == [True, False, True]
    assert cols["city"].dtype == object and cols["city"].tolist() == ["Oslo", "Lima", "Pune"]


def test_columns_from_decoded_tritonclient_request() -> None:
    body, n = _request(
        {
            "age": (np.array([[31], [42]], dtype=np.int64), True),
            "income": (np.array([10.0, 20.0]), False),
            "member": (np.array([False, True]), True),
            "city": (np.array([b"Rome", b"Kyiv"], dtype=object), True),
        }
    )
    cols = tensors_to_columns(decode_request(body, n).inputs, SIGNATURE)
    assert cols["age"].tolist() == [31, 42]
    assert cols["income"].tolist() == [10.0, 20.0]
    assert cols["member"].tolist() == [False, True]
    assert cols["city"].tolist() == ["Rome", "Kyiv"]


def test_columns_numeric_matrix() -> None:
    matrix = np.array([[30, 1.5, 1, 7], [40, 2.5, 0, 8]], dtype=np.float64)
    cols = tensors_to_columns([_t("features", matrix)], SIGNATURE)
    assert cols["age"].tolist() == [30, 40] and cols["age"].dtype == np.int64
    assert cols["income"].tolist() == [1.5, 2.5]
    assert cols["member"].tolist() == [True, False]
    assert cols["city"].tolist() == ["7.0", "8.0"]  # numbers for a string column: their text


def test_columns_bytes_matrix_parses_cells_per_kind() -> None:
    matrix = [["30", "1.5e3", "true", "Oslo"], [" 41 ", "nan", "0", "Lima"], ["2.0", "", "No", "X"]]
    body, n = _request({"input": (np.array(matrix, dtype=object), True)})
    cols = tensors_to_columns(decode_request(body, n).inputs, SIGNATURE)
    assert cols["age"].tolist() == [30, 41, 2] and cols["age"].dtype == np.int64
    assert cols["income"][0] == 1500.0 and np.isnan(cols["income"][1:]).all()
    assert cols["member"].tolist() == [True, False, False] and cols["member"].dtype == bool
    assert cols["city"].tolist() == ["Oslo", "Lima", "X"]


def test_columns_missing_values_are_kept() -> None:
    matrix = np.array([["", "", ""], ["5", "2", "yes"]], dtype=object)
    cols = tensors_to_columns(
        [_t("m", matrix, "BYTES")], [("i", "integer"), ("x", "number"), ("b", "boolean")]
    )
    assert np.isnan(cols["i"][0]) and cols["i"][1] == 5 and cols["i"].dtype == np.float64
    assert np.isnan(cols["x"][0])
    assert cols["b"].tolist() == [None, True]
    floats = tensors_to_columns(
        [_t("i", np.array([1.0, np.nan])), _t("b", np.array([np.nan, 1.0]))],
        [("i", "integer"), ("b", "boolean")],
    )
    assert np.isnan(floats["i"][1]) and floats["b"].tolist() == [None, True]


def test_columns_single_column_model() -> None:
    cols = tensors_to_columns([_t("anything", np.array([[1.0], [2.0]]))], [("x", "number")])
    assert cols["x"].tolist() == [1.0, 2.0]
    cols = tensors_to_columns([_t("x", np.array([[1.0], [2.0]]))], [("x", "number")])
    assert cols["x"].tolist() == [1.0, 2.0]


def test_columns_accept_numpy_string_arrays() -> None:
    cols = tensors_to_columns(
        [_t("a", np.array(["1", "2"])), _t("b", np.array(["x", "y"]))],
        [("a", "integer"), ("b", "string")],
    )
    assert cols["a"].tolist() == [1, 2] and cols["b"].tolist() == ["x", "y"]


def _col_error(inputs: list[V2Tensor], columns: list[tuple[str, str]]) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as info:
        tensors_to_columns(inputs, columns)
    return info.value


def test_columns_error_missing_and_unexpected() -> None:
    err = _col_error(
        [_t("age", [1, 2]), _t("salary", [1.0, 2.0]), _t("town", ["a", "b"], "BYTES")], SIGNATURE
    )
    by_col = {p.column: p.message for p in err.problems}
    assert set(by_col) == {"salary", "town", "income", "member", "city"}
    assert "unexpected" in by_col["salary"] and "missing" in by_col["income"]
    assert "'income'" in str(err) and "'salary'" in str(err)


def test_columns_error_row_counts() -> None:
    err = _col_error(
        [_t("a", [1.0, 2.0]), _t("b", [1.0, 2.0, 3.0])], [("a", "number"), ("b", "number")]
    )
    assert "different row counts" in str(err) and "a=2" in str(err) and "b=3" in str(err)


def test_columns_error_unparsable_numbers_name_rows() -> None:
    matrix = np.array([["1", "x"], ["two", "2"], ["3", "3.5"]], dtype=object)
    err = _col_error([_t("m", matrix, "BYTES")], [("n", "number"), ("i", "integer")])
    located = sorted((p.column, p.row) for p in err.problems)
    assert located == [("i", 0), ("i", 2), ("n", 1)]
    assert "'two'" in str(err)


@pytest.mark.parametrize(
    ("tensor", "kind", "fragment"),
    [
        (_t("c", np.array([1.0, 2.5])), "integer", "not an integer"),
        (_t("c", np.array([1.0, np.inf])), "integer", "not a finite number"),
        (_t("c", np.array([-np.inf, 2.0])), "integer", "row 0, column 'c': not a finite number"),
        (_t("c", np.array([0, 2])), "boolean", "not a boolean"),
        (_t("c", ["yes", "maybe"], "BYTES"), "boolean", "cannot parse 'maybe'"),
        (_t("c", np.array([b"ok", b"\xff"], dtype=object), "BYTES"), "string", "UTF-8"),
        (_t("c", np.array([2**64 - 1], dtype=np.uint64)), "integer", "too large"),
        (_t("c", ["99999999999999999999"], "BYTES"), "integer", "cannot parse"),
        # a boolean is no number, as the JSON API and batch scoring say (docs/inputs.md)
        (_t("c", np.array([True])), "number", "bool tensor cannot feed a number column"),
        (_t("c", np.array([True])), "integer", "bool tensor cannot feed an integer column"),
        (_t("c", np.array([1e19])), "integer", "too large for a 64-bit integer"),
    ],
)
def test_columns_error_bad_values(tensor: V2Tensor, kind: str, fragment: str) -> None:
    err = _col_error([tensor], [("c", kind)])
    assert all(p.column == "c" for p in err.problems)
    assert fragment in str(err)


def test_columns_error_bad_shapes() -> None:
    err = _col_error(
        [_t("a", np.zeros((2, 2))), _t("b", np.zeros(2))], [("a", "number"), ("b", "number")]
    )
    assert _columns_of(err) == ["a"] and "[n, 1]" in str(err)
    err = _col_error([_t("features", np.zeros((2, 3)))], SIGNATURE)
    assert _columns_of(err) == ["features"] and "[n, 4]" in str(err)
    err = _col_error([_t("age", np.zeros((2, 4)))], SIGNATURE)  # named like one column
    assert "age" in _columns_of(err) and "income" in _columns_of(err)


def test_columns_error_unknown_kind() -> None:
    with pytest.raises(RelevoError, match="kind"):
        tensors_to_columns([_t("a", [1.0])], [("a", "float")])
