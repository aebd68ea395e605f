"""What the OpenAPI document says about bodies and answers, so that it tells the truth: every
status a route can answer, with relevo's error shape (or V2's), and the request bodies that the
routes read themselves (they read bytes, after the token check, not through FastAPI)."""

from __future__ import annotations

from typing import Any

JSON = "application/json"

PROBLEM = {
    "type": "object",
    "required": ["message"],
    "properties": {
        "row": {"type": "integer"},
        "column": {"type": "string"},
        "message": {"type": "string"},
    },
}
#: relevo's one error shape (`problems` lists every problem of a bad request)
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "problems": {"type": "array", "items": PROBLEM},
        "request_id": {"type": "string", "description": "Find the details in the server log."},
    },
}
#: the Open Inference Protocol's error shape
V2_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "request_id": {"type": "string"}},
}

_MEANING = {
    400: "The body is not what the endpoint reads (not JSON, empty, a bad V2 request).",
    401: "Missing, malformed or wrong bearer token.",
    403: "The API token where the admin token is needed.",
    404: "No such deployment, model or version.",
    409: "The request clashes with the current state.",
    413: "The body is larger than RELEVO_MAX_BODY_MB, or holds more than RELEVO_MAX_ROWS rows.",
    422: "The request names what is wrong, problem by problem.",
    500: "An internal error: the body carries a request id to find in the server log.",
    503: "Models are loading, or the deployment or the store cannot serve right now.",
}


def errors(*statuses: int, v2: bool = False) -> dict[int | str, dict[str, Any]]:
    """The `responses` entries of the error statuses a route can answer."""
    schema = V2_ERROR if v2 else ERROR
    return {
        status: {"description": _MEANING[status], "content": {JSON: {"schema": schema}}}
        for status in (*statuses, 500)
    }


def ok(schema: dict[str, Any], description: str = "Success.") -> dict[int | str, Any]:
    return {200: {"description": description, "content": {JSON: {"schema": schema}}}}


def obj(*required: str, **properties: Any) -> dict[str, Any]:
    """A JSON object schema with these `required` keys and `properties`."""
    return {"type": "object", "required": list(required), "properties": properties}


def request_body(
    schema: dict[str, Any], example: Any = None, binary: bool = False, required: bool = True
) -> dict:
    """An `openapi_extra` declaring a JSON request body (also binary for the V2 extension);
    `required=False` for a body that may be left out."""
    content: dict[str, Any] = {JSON: {"schema": schema}}
    if example is not None:
        content[JSON]["example"] = example
    if binary:
        content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"required": required, "content": content}}


PREDICT_BODY = obj(
    "instances",
    instances={
        "type": "array",
        "minItems": 1,
        "items": {"type": "object", "additionalProperties": True},
        "description": "Rows to score, at most RELEVO_MAX_ROWS (10,000 by default).",
    },
)
PREDICT_EXAMPLE = {
    "instances": [
        {
            "age": 42,
            "tenure_months": 5,
            "contract": "month-to-month",
            "monthly_charges": 89.5,
            "payment_method": "electronic check",
            "internet_service": "fiber",
            "support_calls": 3,
            "region": "north",
            "satisfaction": 2.0,
        }
    ]
}
PREDICTIONS = obj(
    "predictions",
    predictions={"type": "array", "items": obj("id", "model", id={"type": "string"})},
)
DEPLOYMENT = obj("name", "model", name={"type": "string"}, model={"type": "string"})
MODEL_VERSION = obj("name", "version", name={"type": "string"}, version={"type": "integer"})
READINESS = obj(
    "ready",
    ready={"type": "boolean"},
    deployments={"type": "object", "additionalProperties": {"type": "string"}},
    failing={"type": "object", "additionalProperties": {"type": "string"}},
    problems={"type": "array", "items": {"type": "string"}},
)
V2_INFER_BODY = obj(
    "inputs",
    id={"type": "string"},
    inputs={
        "type": "array",
        "items": obj(
            "name",
            "shape",
            "datatype",
            name={"type": "string"},
            shape={"type": "array", "items": {"type": "integer"}},
            datatype={"type": "string"},
            data={},
        ),
    },
    outputs={"type": "array", "items": obj("name", name={"type": "string"})},
    parameters={"type": "object"},
)
