"""KServe's REST client (protocol v2) against a live relevo server, run OUTSIDE relevo's
environment: installing `kserve` pins pandas, protobuf, python-dateutil, ... to versions the
project does not use, so `tests/server/test_v2_http.py` runs this script under another Python
that has kserve installed (`RELEVO_TEST_KSERVE_PYTHON`; `.ci/run` makes one).

    python kserve_client.py http://127.0.0.1:PORT < tensors.json

stdin: a JSON list of tensors, `{"name": ..., "datatype": "INT64" | "FP64" | "BYTES",
"data": [...]}` (a missing number is null, strings are strings). stdout: one JSON object with
everything the test asserts on. Any unexpected failure exits non-zero with a traceback on stderr.

Imports only kserve, numpy, httpx and the standard library: never relevo, never pytest.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx
import kserve
import numpy as np
from kserve.protocol.infer_type import RequestedOutput

_DTYPES = {"INT64": np.int64, "FP64": np.float64, "BYTES": object}


def _inputs(tensors: list[dict[str, Any]], binary: bool) -> list[Any]:
    out = []
    for tensor in tensors:
        data = np.array(tensor["data"], dtype=_DTYPES[tensor["datatype"]])  # null -> nan for FP64
        infer_input = kserve.InferInput(tensor["name"], list(data.shape), tensor["datatype"])
        infer_input.set_data_from_numpy(data, binary_data=binary)
        out.append(infer_input)
    return out


def _text(values: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(values).ravel()]


def _answer(response: Any) -> dict[str, Any]:
    outputs = {o.name: o for o in response.outputs}
    return {
        "id": response.id,
        "model_name": response.model_name,
        "outputs": [o.name for o in response.outputs],
        "probability": [float(p) for p in np.asarray(outputs["probability"].as_numpy()).ravel()],
        "ids": _text(outputs["id"].as_numpy()),
    }


async def run(url: str, tensors: list[dict[str, Any]]) -> dict[str, Any]:
    config = kserve.RESTConfig(protocol="v2", timeout=30)
    client = kserve.InferenceRESTClient(config)
    result: dict[str, Any] = {}
    try:
        result["server_live"] = bool(await client.is_server_live(url))
        result["server_ready"] = bool(await client.is_server_ready(url))
        result["model_ready"] = {
            name: bool(await client.is_model_ready(url, name)) for name in ("churn", "nope")
        }
        answers = []
        # JSON in, JSON out
        request = kserve.InferRequest("churn", _inputs(tensors, False), request_id="ks-1")
        answers.append(_answer(await client.infer(url, data=request, model_name="churn")))
        # binary in, requested outputs binary out
        request = kserve.InferRequest(
            "churn",
            _inputs(tensors, True),
            request_id="ks-2",
            request_outputs=[
                RequestedOutput("probability", {"binary_data": True}),
                RequestedOutput("id", {"binary_data": True}),
            ],
        )
        answers.append(_answer(await client.infer(url, data=request, model_name="churn")))
        result["answers"] = answers
        # an unknown model: must raise httpx.HTTPStatusError (anything else propagates)
        try:
            await client.infer(url, data=request, model_name="nope")
        except httpx.HTTPStatusError as exc:
            result["unknown_model_error"] = str(exc)
        else:
            result["unknown_model_error"] = None
        return result
    finally:
        await client.close()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} SERVER_URL < tensors.json", file=sys.stderr)
        return 2
    tensors = json.load(sys.stdin)
    result = asyncio.run(run(argv[1], tensors))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
