"""A Python client for a running relevo server.

>>> client = relevo.Client("http://127.0.0.1:8000")          # doctest: +SKIP
>>> scored = client.predict("churn", customers)               # doctest: +SKIP
>>> scored[["id", "model", "probability", "label"]]           # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Literal

import httpx
import numpy as np
import orjson
import pandas as pd

from relevo.errors import (
    AuthError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    Problem,
    RelevoError,
    UnavailableError,
)
from relevo.names import check_name, validate_name
from relevo.routing.deployment import KEEP, KeepType
from relevo.serving.records import flatten_output, frame_to_records

_BY_STATUS: dict[int, type[RelevoError]] = {
    400: InvalidInputError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: InvalidInputError,
    # a proxy in front of the server: it is down, or did not answer in time
    502: UnavailableError,
    503: UnavailableError,
    504: UnavailableError,
}


_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
_MAX_PROBLEMS = 100


def _default(value: Any) -> Any:
    """What orjson does not write itself: Decimals (what `read_sql` gives for NUMERIC) as
    numbers, times (pandas or Python) as ISO 8601 text, pandas' missing markers as null."""
    if value is pd.NA or value is pd.NaT:  # (NaT is a datetime too: first)
        return None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, pd.Timestamp | datetime | date | time):
        return value.isoformat()
    if isinstance(value, pd.Timedelta):
        return value.isoformat()
    raise TypeError(f"a {type(value).__name__} value has no JSON form")


def _dumps(doc: Any) -> bytes:
    try:
        return orjson.dumps(doc, default=_default, option=_OPTIONS)
    except TypeError as exc:  # orjson's JSONEncodeError is a TypeError
        raise InvalidInputError(f"the rows cannot be sent as JSON: {exc}") from None


def _refuse_infinities(rows: list[dict[str, Any]]) -> None:
    problems: list[Problem] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            continue  # the server says what is wrong with it
        for key, value in row.items():
            # (NumPy floats of every width too: float32's infinity would go as null)
            if isinstance(value, float | Decimal | np.floating) and (
                value == _INF or value == -_INF
            ):
                problems.append(Problem("not a finite number", row=i, column=str(key)))
                if len(problems) >= _MAX_PROBLEMS:
                    break
        if len(problems) >= _MAX_PROBLEMS:
            break
    if problems:
        raise InvalidInputError(
            "infinite numbers in the rows: JSON has none (send null for a missing value)",
            problems,
        )


_INF = float("inf")


def _segment(name: str) -> str:
    """`name` as one URL path segment, checked here as the server checks it: a name no
    deployment can have (`a/b`, `a b`, `churn?x`, `..`) is a NotFoundError saying what names
    are, not a bare 404 from a path that reached no route (or another resource)."""
    if not name:
        raise InvalidInputError("the deployment name is empty")
    check_name(name)  # its alphabet needs no quoting in a URL path
    return name


class Client:
    """Talks to a relevo server's JSON API; errors come back as relevo's own exceptions."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        *,
        token: str | None = None,
        timeout: float = 30.0,
        batch_rows: int = 1000,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.batch_rows = batch_rows
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def predict_records(self, deployment: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Score JSON-like rows; one prediction object per row (id, model, outputs).

        Decimals go as numbers, times as ISO 8601 text, other keys than text as text; an
        infinite number is refused here (JSON has none: it would go as null, a missing
        value), naming its row and column."""
        _refuse_infinities(rows)
        body = _dumps({"instances": rows})
        answer = self._request(
            "POST", f"/v1/deployments/{_segment(deployment)}/predict", content=body
        )
        return answer["predictions"]

    def predict(self, deployment: str, data: pd.DataFrame) -> pd.DataFrame:
        """Score a DataFrame (in batches of `batch_rows`); returns id, model and outputs,
        indexed like `data`. A frame without rows is an InvalidInputError."""
        if not isinstance(data, pd.DataFrame):
            raise TypeError(
                f"Client.predict takes a pandas DataFrame, not a {type(data).__name__}; "
                "score a list of dicts with Client.predict_records"
            )
        if len(data) == 0:
            # as the server answers `{"instances": []}` and score_frame an empty frame
            raise InvalidInputError("the DataFrame has no rows: nothing to score")
        records = frame_to_records(data)
        _refuse_infinities(records)  # rows numbered in the whole frame, not in its batch
        predictions: list[dict[str, Any]] = []
        for start in range(0, len(records), self.batch_rows):
            try:
                predictions.extend(
                    self.predict_records(deployment, records[start : start + self.batch_rows])
                )
            except InvalidInputError as exc:  # the server numbers the rows of its batch
                exc.problems = [
                    replace(p, row=p.row + start) if p.row is not None else p for p in exc.problems
                ]
                raise
        out = pd.DataFrame.from_records([flatten_output(p, set()) for p in predictions])
        out.index = data.index
        return out

    def health(self) -> bool:
        """Whether the server is live (`/healthz` answers 200); False when it cannot be reached."""
        try:
            return self._send("GET", "/healthz").status_code == 200
        except UnavailableError:
            return False

    def ready(self) -> dict[str, Any]:
        """What `/readyz` says: `{"ready": true|false, ...}` (a server that is not ready answers
        503 with its reasons under `problems`); UnavailableError when it cannot be reached."""
        response = self._send("GET", "/readyz")
        return self._answer(response, ok=(200, 503))

    def deploy(
        self,
        deployment: str,
        model: str,
        *,
        key: str | KeepType | None = KEEP,
        strategy: Literal["basic", "shadow", "canary"] | None = None,
        weight: float | None = None,
        steps: Sequence[int] | None = None,
        rollout: bool = False,
        manual: bool = False,
        mirror: float | None = None,
        min_step_rows: int | None = None,
        min_step_seconds: float | None = None,
        bake_seconds: float | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Deploy `model` (NAME:VERSION) under `deployment`, as `relevo deploy` does: a basic
        swap, unless `strategy`, `weight`, `steps` or `rollout` ask for a canary challenger
        beside the champion (`manual`: hold at each step until `promote`) or `mirror` for a
        shadow. `key` names the routing-key column; by default a redeploy keeps the current
        one, `None` removes it. `reason` goes to the audit trail. Returns the new state."""
        validate_name(deployment)  # as `relevo deploy` says it, before anything is sent
        if isinstance(steps, str):  # a str is a Sequence too: "5,25" would go as its characters
            raise TypeError("Client.deploy takes steps as a list of percentages: [5, 25, 50, 100]")
        fields: dict[str, Any] = {"model": model}
        if not isinstance(key, KeepType):  # omitted in the body: the server keeps the key
            fields["key"] = key
        given = {
            "strategy": strategy,
            "weight": weight,
            "steps": list(steps) if steps is not None else None,
            "rollout": rollout or None,
            "manual": manual or None,
            "mirror": mirror,
            "min_step_rows": min_step_rows,
            "min_step_seconds": min_step_seconds,
            "bake_seconds": bake_seconds,
            "reason": reason,
        }
        fields.update({k: v for k, v in given.items() if v is not None})
        return self._request(
            "PUT", f"/v1/deployments/{_segment(deployment)}", content=_dumps(fields)
        )

    def promote(
        self, deployment: str, *, reason: str | None = None, revision: int | None = None
    ) -> dict[str, Any]:
        """Move the rollout to its next step, or make the challenger the champion (as
        `relevo promote`). With `revision` (the one `status` showed), only from that revision:
        ConflictError if the deployment moved since. Returns the new state."""
        return self._change(deployment, "promote", reason, revision)

    def rollback(
        self, deployment: str, *, reason: str | None = None, revision: int | None = None
    ) -> dict[str, Any]:
        """Drop the challenger, or bring back the champion the last promotion replaced (as
        `relevo rollback`; `revision` as in `promote`). Returns the new state."""
        return self._change(deployment, "rollback", reason, revision)

    def history(self, deployment: str) -> list[dict[str, Any]]:
        """The audit trail, oldest first (as `relevo history`): every change with its
        `action`, `actor`, `reason`, time and the `state` it made."""
        path = f"/v1/deployments/{_segment(deployment)}/history"
        return self._request("GET", path)["events"]

    def status(self, deployment: str) -> dict[str, Any]:
        """The deployment's state, what the answering server serves, rows, errors and latency
        per model, the shadow comparison and what the gates say now (as `relevo status`)."""
        return self._request("GET", f"/v1/deployments/{_segment(deployment)}/status")

    def deployment(self, deployment: str) -> dict[str, Any]:
        """The deployment's state (champion, challenger, strategy, key, revision)."""
        return self._request("GET", f"/v1/deployments/{_segment(deployment)}")

    def deployments(self) -> list[dict[str, Any]]:
        """Every deployment's state."""
        return self._request("GET", "/v1/deployments")["deployments"]

    def models(self) -> list[dict[str, Any]]:
        return self._request("GET", "/v1/models")["models"]

    def _change(
        self, deployment: str, action: str, reason: str | None, revision: int | None
    ) -> dict[str, Any]:
        fields = {k: v for k, v in (("reason", reason), ("revision", revision)) if v is not None}
        path = f"/v1/deployments/{_segment(deployment)}/{action}"
        return self._request("POST", path, content=_dumps(fields))

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return self._answer(self._send(method, path, **kwargs))

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Content-Type": "application/json"} if "content" in kwargs else {}
        try:
            return self._http.request(method, path, headers=headers, **kwargs)
        except (httpx.ReadTimeout, httpx.WriteTimeout) as exc:
            # it was reached: a slow answer (a big batch, a busy server) is not a missing server
            raise UnavailableError(
                f"the relevo server at {self.url} did not answer {method} {path} within "
                f"{self._http.timeout.read:g} s (Client(timeout=...)); it may still have done "
                "what was asked: check before sending it again"
            ) from exc
        except httpx.TransportError as exc:
            raise UnavailableError(f"cannot reach the relevo server at {self.url}: {exc}") from exc

    def _answer(self, response: httpx.Response, ok: tuple[int, ...] = ()) -> dict[str, Any]:
        """The JSON of a success (or of a status in `ok`); relevo's exception for an error."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code < 400 or response.status_code in ok:
            if isinstance(body, dict):
                return body
            # another service at this URL (a web page, a proxy's redirect), not relevo
            kind = response.headers.get("content-type", "no content type")
            raise UnavailableError(
                f"{response.request.method} {response.url} answered {response.status_code} "
                f"{response.reason_phrase} with {kind}, not relevo's JSON: is {self.url} "
                "a relevo server?"
            )
        if not isinstance(body, dict):
            # not relevo's answer (a proxy's error page, say): its status, not its markup
            kind = response.headers.get("content-type", "no content type")
            request = response.request
            body = {
                "error": f"{request.method} {request.url.path} answered {response.status_code} "
                f"{response.reason_phrase} ({kind}), not relevo's JSON: from a proxy or "
                f"another service in front of {self.url}?"
            }
        message = str(body.get("error", body.get("detail", response.reason_phrase)))
        if body.get("request_id"):  # a server-side failure: its details are in the server log
            message += f" (request id {body['request_id']} in the server log)"
        if response.status_code in (401, 403):
            raise AuthError(message, response.status_code)
        cls = _BY_STATUS.get(response.status_code, RelevoError)
        if issubclass(cls, InvalidInputError):
            # as the server wrote them (Problem.to_dict): a query parameter's is its `field`
            problems = [
                Problem(p.get("message", ""), p.get("row"), p.get("column"), option=p.get("field"))
                for p in body.get("problems", [])
            ]
            raise cls(str(body.get("message", message)), problems)
        raise cls(message)
