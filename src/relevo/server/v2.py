"""The Open Inference Protocol (V2) over HTTP: the names every V2 module shares.

A deployment's name is its V2 model name; the version is the model version it serves. The wire
codec lives in `v2_types`, `v2_decode`, `v2_data`, `v2_columns` and `v2_encode`; turning a request
into rows and answers into tensors in `v2_infer`; the routes (tokens, body limits) in
`v2_routes`.
"""

from __future__ import annotations

__all__ = ["HEADER_LENGTH", "PROTOCOL"]

#: the binary tensor data extension's header: the length of the JSON part of a body
HEADER_LENGTH = "Inference-Header-Content-Length"
PROTOCOL = "v2"
