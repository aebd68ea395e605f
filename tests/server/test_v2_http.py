"""The Open Inference Protocol V2 over real HTTP, spoken by real clients: tritonclient's HTTP
client, KServe's REST client (under another Python, see kserve_client.py) and plain httpx,
against a live relevo server."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest

import relevo
from relevo.datasets import CHURN_FEATURES, CHURN_ID

tritonhttp = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

#: the churn model's columns as V2 datatypes, as relevo's model metadata must report them
CHURN_DATATYPES = {
    "age": "INT64",
    "tenure_months": "INT64",
    "contract": "BYTES",
    "monthly_charges": "FP64",
    "payment_method": "BYTES",
    "internet_service": "BYTES",
    "support_calls": "INT64",
    "region": "BYTES",
    "satisfaction": "FP64",
}


# ------------------------------------------------------------------------------ helpers


def _rows(churn_frame: pd.DataFrame, n: int = 40) -> pd.DataFrame:
    """`n` rows, some with a missing satisfaction (the model's one nullable column)."""
    missing = churn_frame[churn_frame["satisfaction"].isna()].head(3)
    assert len(missing) == 3
    rest = churn_frame[churn_frame["satisfaction"].notna()].head(n - len(missing))
    return pd.concat([rest, missing])


def _expected(churn_pipeline: Any, rows: pd.DataFrame) -> np.ndarray:
    return churn_pipeline.predict_proba(rows[CHURN_FEATURES])[:, 1]


def _column(rows: pd.DataFrame, col: str) -> tuple[np.ndarray, str]:
    """A frame column as a numpy array and its V2 datatype (strings as object arrays)."""
    series = rows[col]
    if pd.api.types.is_integer_dtype(series.dtype):
        return series.to_numpy(dtype=np.int64), "INT64"
    if pd.api.types.is_float_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64), "FP64"
    return series.to_numpy(dtype=object), "BYTES"


def _triton_inputs(rows: pd.DataFrame, binary: bool) -> list[Any]:
    """One InferInput per feature column, plus the deployment's routing key column."""
    inputs = []
    for col in [*CHURN_FEATURES, CHURN_ID]:
        data, datatype = _column(rows, col)
        tensor = tritonhttp.InferInput(col, list(data.shape), datatype)
        tensor.set_data_from_numpy(data, binary_data=binary)
        inputs.append(tensor)
    return inputs


def _json_inputs(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Hand-written JSON tensors; a missing number is null."""
    inputs = []
    for col in [*CHURN_FEATURES, CHURN_ID]:
        data, datatype = _column(rows, col)
        values = [None if v != v else v for v in data.tolist()]
        inputs.append({"name": col, "datatype": datatype, "shape": [len(data)], "data": values})
    return inputs


def _host(url: str) -> str:
    return url.removeprefix("http://")


def _logged_ids(rv: relevo.Relevo, expected: int, timeout: float = 15.0) -> set[str]:
    """The ids in the prediction log, once it holds at least `expected` rows."""
    deadline = time.monotonic() + timeout
    while rv.store.predictions.count("churn") < expected:
        assert time.monotonic() < deadline, "the prediction log did not flush in time"
        time.sleep(0.05)
    return {r["id"] for chunk in rv.store.predictions.iter_rows("churn") for r in chunk}


def _text(values: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(values).ravel()]


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(url, content=body, headers=headers or {}, timeout=30)


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"], str) and body["error"]
    return str(body["error"])


# ------------------------------------------------------------------------ tritonclient


def test_tritonclient_health_and_metadata(live_server) -> None:
    client = tritonhttp.InferenceServerClient(url=_host(live_server.url))
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.get_server_metadata() == {
            "name": "relevo",
            "version": relevo.__version__,
            "extensions": ["binary_tensor_data"],
        }
        assert client.is_model_ready("churn")
        assert client.is_model_ready("churn", model_version="1")
        assert not client.is_model_ready("churn", model_version="2")
        assert not client.is_model_ready("nope")

        meta = client.get_model_metadata("churn")
        assert meta["name"] == "churn"
        assert meta["versions"] == ["1"]
        assert meta["platform"] == "relevo-sklearn"
        assert meta["inputs"] == [
            {"name": c, "datatype": CHURN_DATATYPES[c], "shape": [-1]} for c in CHURN_FEATURES
        ]
        assert meta["outputs"] == [
            {"name": "probability", "datatype": "FP64", "shape": [-1]},
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "id", "datatype": "BYTES", "shape": [-1]},
        ]
        assert client.get_model_metadata("churn", model_version="1") == meta
        with pytest.raises(InferenceServerException, match="no version '7'"):
            client.get_model_metadata("churn", model_version="7")
        with pytest.raises(InferenceServerException, match="not found"):
            client.get_model_metadata("nope")
    finally:
        client.close()


@pytest.mark.parametrize("binary_inputs", [True, False], ids=["binary-in", "json-in"])
def test_tritonclient_infer_matches_the_pipeline(
    live_server, rv, churn_frame, churn_pipeline, binary_inputs: bool
) -> None:
    rows = _rows(churn_frame)
    expected = _expected(churn_pipeline, rows)
    client = tritonhttp.InferenceServerClient(url=_host(live_server.url))
    try:
        # requested outputs, one binary and one JSON, in an order of our choosing
        outputs = [
            tritonhttp.InferRequestedOutput("id", binary_data=False),
            tritonhttp.InferRequestedOutput("probability", binary_data=True),
        ]
        result = client.infer(
            "churn", _triton_inputs(rows, binary_inputs), outputs=outputs, request_id="req-1"
        )
        response = result.get_response()
        assert response["model_name"] == "churn"
        assert response["model_version"] == "1"
        assert response["id"] == "req-1"
        assert [o["name"] for o in response["outputs"]] == ["id", "probability"]
        assert "data" in result.get_output("id")  # JSON
        assert result.get_output("probability")["parameters"]["binary_data_size"] == 8 * len(rows)
        np.testing.assert_allclose(result.as_numpy("probability"), expected, rtol=1e-9)
        first_ids = _text(result.as_numpy("id"))
        assert len(set(first_ids)) == len(rows)

        # no outputs listed: tritonclient asks every output as binary
        result = client.infer("churn", _triton_inputs(rows, binary_inputs))
        names = [o["name"] for o in result.get_response()["outputs"]]
        assert names == ["probability", "label", "id"]
        assert all("binary_data_size" in o["parameters"] for o in result.get_response()["outputs"])
        np.testing.assert_allclose(result.as_numpy("probability"), expected, rtol=1e-9)
        labels = result.as_numpy("label")
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(labels, (expected >= 0.5).astype(np.int64))
        second_ids = _text(result.as_numpy("id"))

        # every output as JSON, on the versioned path
        outputs = [
            tritonhttp.InferRequestedOutput(name, binary_data=False)
            for name in ("probability", "label", "id")
        ]
        result = client.infer(
            "churn", _triton_inputs(rows, binary_inputs), model_version="1", outputs=outputs
        )
        assert all("data" in o for o in result.get_response()["outputs"])
        np.testing.assert_allclose(result.as_numpy("probability"), expected, rtol=1e-9)
        third_ids = _text(result.as_numpy("id"))
    finally:
        client.close()

    answered = {*first_ids, *second_ids, *third_ids}
    assert len(answered) == 3 * len(rows)
    assert answered <= _logged_ids(rv, len(answered))


def test_tritonclient_gzip_request_and_errors(live_server, churn_frame, churn_pipeline) -> None:
    rows = _rows(churn_frame, 10)
    client = tritonhttp.InferenceServerClient(url=_host(live_server.url))
    try:
        result = client.infer(
            "churn", _triton_inputs(rows, True), request_compression_algorithm="gzip"
        )
        np.testing.assert_allclose(
            result.as_numpy("probability"), _expected(churn_pipeline, rows), rtol=1e-9
        )
        with pytest.raises(InferenceServerException, match="not found") as err:
            client.infer("nope", _triton_inputs(rows, True))
        assert err.value.status() == "404"
        inputs = [t for t in _triton_inputs(rows, True) if t.name() != "region"]
        with pytest.raises(InferenceServerException, match="region") as err:
            client.infer("churn", inputs)
        assert err.value.status() == "400"
        with pytest.raises(InferenceServerException, match="unknown output 'score'"):
            client.infer(
                "churn",
                _triton_inputs(rows, True),
                outputs=[tritonhttp.InferRequestedOutput("score")],
            )
    finally:
        client.close()


# ------------------------------------------------------------------------------ KServe


#: runs KServe's REST client under another Python: `kserve` pins pandas, protobuf, ... to
#: versions relevo's environment does not use, so it is not installed there
KSERVE_CLIENT = Path(__file__).with_name("kserve_client.py")
KSERVE_PYTHON_VAR = "RELEVO_TEST_KSERVE_PYTHON"


def _kserve_tensors(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as JSON tensors for kserve_client.py: one per feature column plus the routing
    key column, with the V2 datatype; a missing number is null, strings stay strings."""
    tensors = []
    for col in [*CHURN_FEATURES, CHURN_ID]:
        data, datatype = _column(rows, col)
        values = [None if v != v else v for v in data.tolist()]
        tensors.append({"name": col, "datatype": datatype, "data": values})
    return tensors


def _run_kserve_client(url: str, tensors: list[dict[str, Any]]) -> dict[str, Any]:
    """Run kserve_client.py under $RELEVO_TEST_KSERVE_PYTHON; skip when that is not set."""
    python = os.environ.get(KSERVE_PYTHON_VAR)
    if not python:
        pytest.skip(
            f"set {KSERVE_PYTHON_VAR} to a Python with kserve installed (.ci/run makes one)"
        )
    try:
        proc = subprocess.run(
            [python, str(KSERVE_CLIENT), url],
            input=json.dumps(tensors),
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"kserve_client.py timed out after 120 s; stderr:\n{exc.stderr}")
    if proc.returncode != 0:
        pytest.fail(
            f"kserve_client.py under {python} exited with {proc.returncode}; "
            f"stderr:\n{proc.stderr}\nstdout:\n{proc.stdout}"
        )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"kserve_client.py printed nothing; stderr:\n{proc.stderr}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def test_kserve_rest_client_v2(live_server, rv, churn_frame, churn_pipeline) -> None:
    rows = _rows(churn_frame, 25)
    expected = _expected(churn_pipeline, rows)

    result = _run_kserve_client(live_server.url, _kserve_tensors(rows))

    assert result["server_live"] is True
    assert result["server_ready"] is True
    assert result["model_ready"] == {"churn": True, "nope": False}
    answers = result["answers"]
    ids: set[str] = set()
    for answer, request_id in zip(answers, ["ks-1", "ks-2"], strict=True):
        assert answer["id"] == request_id
        assert answer["model_name"] == "churn"
        assert {"probability", "id"} <= set(answer["outputs"])
        np.testing.assert_allclose(answer["probability"], expected, rtol=1e-9)
        assert len(answer["ids"]) == len(rows)
        ids.update(answer["ids"])
    assert answers[1]["outputs"] == ["probability", "id"]
    assert len(ids) == 2 * len(rows)
    assert ids <= _logged_ids(rv, len(ids))
    # an unknown model: httpx.HTTPStatusError, saying so
    error = result["unknown_model_error"]
    assert error is not None, "infer on an unknown model did not raise httpx.HTTPStatusError"
    assert "not found" in error, error


# ------------------------------------------------------------------------------- httpx


def test_httpx_json_without_content_type(live_server, rv, churn_frame, churn_pipeline) -> None:
    rows = _rows(churn_frame, 12)
    body = orjson.dumps({"id": "my-request", "inputs": _json_inputs(rows)})
    request = httpx.Request("POST", f"{live_server.url}/v2/models/churn/infer", content=body)
    assert "content-type" not in request.headers
    with httpx.Client(timeout=30) as client:
        response = client.send(request)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in response.headers
    doc = response.json()
    assert doc["id"] == "my-request"
    assert doc["model_name"] == "churn"
    assert doc["model_version"] == "1"
    outputs = {o["name"]: o for o in doc["outputs"]}
    assert list(outputs) == ["probability", "label", "id"]
    assert outputs["probability"]["datatype"] == "FP64"
    assert outputs["probability"]["shape"] == [len(rows)]
    np.testing.assert_allclose(
        outputs["probability"]["data"], _expected(churn_pipeline, rows), rtol=1e-9
    )
    assert outputs["label"]["datatype"] == "INT64"
    assert outputs["id"]["datatype"] == "BYTES"
    assert set(outputs["id"]["data"]) <= _logged_ids(rv, len(rows))

    # requested outputs only, in the requested order; request-level binary default
    body = orjson.dumps(
        {
            "inputs": _json_inputs(rows),
            "outputs": [{"name": "label"}, {"name": "probability"}],
        }
    )
    doc = _post(f"{live_server.url}/v2/models/churn/versions/1/infer", body).json()
    assert "id" not in doc
    assert [o["name"] for o in doc["outputs"]] == ["label", "probability"]


def test_httpx_bytes_feature_matrix(live_server, churn_frame, churn_pipeline) -> None:
    """One 2-D BYTES tensor [n, k], columns in signature order, plus the routing key."""
    rows = _rows(churn_frame, 15)
    matrix = [
        ["" if pd.isna(v) else repr(v) if isinstance(v, float) else str(v) for v in record]
        for record in rows[CHURN_FEATURES].itertuples(index=False)
    ]
    doc = {
        "inputs": [
            {
                "name": "features",
                "datatype": "BYTES",
                "shape": [len(rows), len(CHURN_FEATURES)],
                "data": matrix,
            },
            {
                "name": CHURN_ID,
                "datatype": "BYTES",
                "shape": [len(rows), 1],
                "data": rows[CHURN_ID].tolist(),
            },
        ],
        "parameters": {"binary_data_output": True},
    }
    response = _post(f"{live_server.url}/v2/models/churn/infer", orjson.dumps(doc))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    header_length = int(response.headers["inference-header-content-length"])
    head = json.loads(response.content[:header_length])
    prob = head["outputs"][0]
    assert prob["name"] == "probability"
    size = prob["parameters"]["binary_data_size"]
    blob = response.content[header_length : header_length + size]
    np.testing.assert_allclose(
        np.frombuffer(blob, dtype="<f8"), _expected(churn_pipeline, rows), rtol=1e-9
    )


def test_httpx_errors_are_400_404_never_5xx(live_server, churn_frame) -> None:
    url = f"{live_server.url}/v2/models/churn/infer"
    rows = _rows(churn_frame, 5)
    good = _json_inputs(rows)

    # malformed JSON, empty body, JSON that is not an object
    assert "not valid JSON" in _error(_post(url, b'{"inputs": ['), 400)
    _error(_post(url, b""), 400)
    _error(_post(url, b"[1, 2]"), 400)

    # a missing feature tensor is named
    without_region = [t for t in good if t["name"] != "region"]
    message = _error(_post(url, orjson.dumps({"inputs": without_region})), 400)
    assert "region" in message

    # an unexpected tensor is named too
    extra = [*good, {"name": "colour", "datatype": "BYTES", "shape": [5], "data": ["r"] * 5}]
    assert "colour" in _error(_post(url, orjson.dumps({"inputs": extra})), 400)

    # values the signature rejects: validation answers 400 (not the JSON API's 422)
    bad_age = [
        {**t, "datatype": "BYTES", "data": ["old"] * 5} if t["name"] == "age" else t for t in good
    ]
    assert "age" in _error(_post(url, orjson.dumps({"inputs": bad_age})), 400)
    missing_tenure = [
        {**t, "datatype": "BYTES", "data": ["", "1", "2", "3", "4"]}
        if t["name"] == "tenure_months"
        else t
        for t in good
    ]
    assert "tenure_months" in _error(_post(url, orjson.dumps({"inputs": missing_tenure})), 400)

    # infinity: binary FP64 and the JSON literal both carry it; no model may see it
    sat = {"name": "satisfaction", "datatype": "FP64", "shape": [5]}
    others = [t for t in good if t["name"] != "satisfaction"]
    head = orjson.dumps({"inputs": [{**sat, "parameters": {"binary_data_size": 40}}, *others]})
    blob = struct.pack("<5d", 1.0, float("inf"), 2.0, -float("inf"), 3.0)
    response = _post(url, head + blob, {"Inference-Header-Content-Length": str(len(head))})
    message = _error(response, 400)
    assert "row 1, column 'satisfaction': not a finite number" in message
    assert "row 3" in message
    body = orjson.dumps({"inputs": [{**sat, "data": [1.0, 2.0, 3.0, 4.0, 123456.5]}, *others]})
    body = body.replace(b"123456.5", b"Infinity")  # tritonclient's rapidjson writes this
    assert "not a finite number" in _error(_post(url, body), 400)

    # row counts that differ, an empty batch
    short = [{**t, "shape": [4], "data": t["data"][:4]} if t["name"] == "age" else t for t in good]
    assert "row counts" in _error(_post(url, orjson.dumps({"inputs": short})), 400)
    empty = [{**t, "shape": [0], "data": []} for t in good]
    _error(_post(url, orjson.dumps({"inputs": empty})), 400)

    # unknown requested output, unsupported classification extension
    doc = {"inputs": good, "outputs": [{"name": "probability"}, {"name": "score"}]}
    assert "score" in _error(_post(url, orjson.dumps(doc)), 400)
    doc = {"inputs": good, "outputs": [{"name": "label", "parameters": {"classification": 2}}]}
    assert "classification" in _error(_post(url, orjson.dumps(doc)), 400)

    # unknown model, unknown version
    assert "not found" in _error(
        _post(f"{live_server.url}/v2/models/nope/infer", orjson.dumps({"inputs": good})), 404
    )
    _error(_post(f"{live_server.url}/v2/models/churn/versions/2/infer", orjson.dumps({})), 404)
    _error(httpx.get(f"{live_server.url}/v2/models/nope"), 404)
    _error(httpx.get(f"{live_server.url}/v2/models/nope/ready"), 404)
    _error(httpx.get(f"{live_server.url}/v2/models/churn/versions/x"), 404)

    # binary data: a size that does not fit the shape, bytes past the body, no header
    age = {"name": "age", "datatype": "INT64", "shape": [5]}
    others = [t for t in good if t["name"] != "age"]
    values = struct.pack("<5q", 30, 40, 50, 60, 70)
    body = orjson.dumps({"inputs": [{**age, "parameters": {"binary_data_size": 39}}, *others]})
    headers = {"Inference-Header-Content-Length": str(len(body))}
    message = _error(_post(url, body + values[:39], headers), 400)
    assert "binary_data_size" in message and "age" in message
    head = orjson.dumps({"inputs": [{**age, "parameters": {"binary_data_size": 40}}, *others]})
    message = _error(
        _post(url, head + values[:20], {"Inference-Header-Content-Length": str(len(head))}), 400
    )
    assert "remain" in message
    _error(_post(url, head + values), 400)  # no Inference-Header-Content-Length
    for bad in ("abc", "-1", str(len(head) + 100)):
        _error(_post(url, head + values, {"Inference-Header-Content-Length": bad}), 400)
    ok = _post(url, head + values, {"Inference-Header-Content-Length": str(len(head))})
    assert ok.status_code == 200, ok.text

    # a body that claims to be gzip but is not
    _error(_post(url, orjson.dumps({"inputs": good}), {"Content-Encoding": "gzip"}), 400)


def test_httpx_metadata_and_health(live_server) -> None:
    base = live_server.url
    assert httpx.get(f"{base}/v2/health/live").json() == {"live": True}
    ready = httpx.get(f"{base}/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    assert httpx.get(f"{base}/v2").json()["version"] == relevo.__version__
    meta = httpx.get(f"{base}/v2/models/churn/versions/1").json()
    assert meta["versions"] == ["1"]
    assert httpx.get(f"{base}/v2/models/churn/ready").json() == {"name": "churn", "ready": True}
    assert httpx.get(f"{base}/v2/models/churn/versions/1/ready").json()["ready"] is True


# ------------------------------------------------------------------------------ tokens


def test_api_token_guards_inference(deployed, server_settings, spawn_server, churn_frame) -> None:
    base = spawn_server(server_settings.model_copy(update={"api_token": "s3cret"}))
    body = orjson.dumps({"inputs": _json_inputs(_rows(churn_frame, 5))})
    url = f"{base}/v2/models/churn/infer"
    denied = _post(url, body)
    assert "bearer token" in _error(denied, 401)
    assert denied.headers["www-authenticate"] == "Bearer"
    _error(_post(url, body, {"Authorization": "Bearer wrong"}), 401)
    _error(httpx.get(f"{base}/v2/models/churn"), 401)
    allowed = _post(url, body, {"Authorization": "Bearer s3cret"})
    assert allowed.status_code == 200, allowed.text
    assert httpx.get(f"{base}/v2/health/ready").status_code == 200  # probes need no token

    client = tritonhttp.InferenceServerClient(url=_host(base))
    try:
        with pytest.raises(InferenceServerException) as err:
            client.get_model_metadata("churn")
        assert err.value.status() == "401"
        meta = client.get_model_metadata("churn", headers={"Authorization": "Bearer s3cret"})
        assert meta["name"] == "churn"
    finally:
        client.close()


def test_rows_over_the_limit_are_refused_from_the_declared_shape(
    deployed, server_settings, spawn_server
):
    url = spawn_server(server_settings.model_copy(update={"max_rows": 100}))
    # 101 rows declared; the data is never decoded, so it does not even need to be there
    doc = {"inputs": [{"name": "age", "datatype": "FP64", "shape": [101], "data": [1.0]}]}
    response = httpx.post(f"{url}/v2/models/churn/infer", content=orjson.dumps(doc))
    assert response.status_code == 413
    assert "101 rows" in response.json()["error"] and "RELEVO_MAX_ROWS" in response.json()["error"]


def test_an_empty_body_and_bad_json_are_explained_plainly(live_server):
    empty = httpx.post(f"{live_server.url}/v2/models/churn/infer", content=b"")
    assert empty.status_code == 400
    assert "the request body is empty" in empty.json()["error"]
    assert "binary" not in empty.json()["error"]
    broken = httpx.post(f"{live_server.url}/v2/models/churn/infer", content=b'{"inputs": [')
    assert broken.status_code == 400
    assert "not valid JSON (line 1" in broken.json()["error"]
    assert "unexpected" not in broken.json()["error"]


def test_a_row_the_model_answers_nan_for_is_a_v2_500_naming_it(
    live_server, rv, churn_frame, nan_for_the_old
) -> None:
    """The JSON API answers such a row with a null label; an INT64 label tensor has no value
    for "no label" (an int of None failed as an unexpected TypeError)."""
    nan_for_the_old(90)
    rows = _rows(churn_frame, 3).assign(age=[30, 95, 30])
    response = _post(
        f"{live_server.url}/v2/models/churn/infer",
        orjson.dumps({"inputs": _json_inputs(rows)}),
        {"Content-Type": "application/json"},
    )
    assert response.status_code == 500, response.text
    body = response.json()
    assert body["request_id"]  # the server log has the same line under it
    message = body["error"]
    assert "churn:1 answered NaN for row(s) 1" in message
    assert "INT64 label tensor cannot carry" in message
