"""What the serving runtime tells about its own health, for every door alike.

One definition of "ready" (`check_readiness`), one place that turns a server-side failure into
what a client may read (`failure_body`, with a request id whose details go to the log), and one
way to count a failed request in the metrics (`observe_failure`). Transport-free: the JSON API,
the V2 protocol and the probes all call these.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from relevo.errors import RelevoError

if TYPE_CHECKING:
    from relevo.serving.runtime import Runtime

log = logging.getLogger("relevo.server")

#: what a client reads of a failure that has no text written to be shown
GENERIC = {500: "internal error", 503: "service unavailable"}


@dataclass(frozen=True)
class Readiness:
    """Whether the runtime can serve, and (for those allowed to see them) why not."""

    ready: bool
    #: deployment name -> NAME:VERSION it serves
    deployments: dict[str, str] = field(default_factory=dict)
    #: deployment name -> why its model cannot load (the healthy ones still serve), in words
    #: any caller may read: no path, host or exception text
    failing: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: deployment name -> the load error's own text (artifact paths, buckets), as logged
    failing_details: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> int:
        return 200 if self.ready else 503

    def to_dict(self, details: bool, internals: bool = False) -> dict[str, Any]:
        """The readiness answer; without `details` only whether it is ready; with `internals`
        a failing model's own error text (which names paths) instead of its public reason."""
        body: dict[str, Any] = {"ready": self.ready}
        if not details:
            return body
        body["deployments"] = dict(self.deployments)
        if self.failing:
            body["failing"] = dict(self.failing_details if internals else self.failing)
        if self.problems:
            body["problems"] = list(self.problems)
        return body


def check_readiness(rt: Runtime) -> Readiness:
    """Ready: the store answers, the deployments are loaded, and at least one can serve when
    any is deployed. Blocking (it pings the store): call it from a worker thread."""
    problems: list[str] = []
    try:
        rt.relevo.store.ping()
    except RelevoError as exc:
        # the store's own message names the database URL (user, host, port): the log only
        log.warning("readiness: %s", exc)
        problems.append("the database does not answer")
    plog = rt.log
    if plog is not None and plog.spool_failing:
        # predictions are refused (503) rather than answered unlogged: out of the balancer
        problems.append("the prediction log cannot write its spool (disk full or read-only)")
    if not rt.loaded:
        problems.append("deployments are not loaded yet")
    elif rt.failures and not rt.endpoints:
        problems.append("no deployment can serve")
    # a deployment that cannot load is reported, but does not take the healthy ones out of
    # service: replicas stay in the load balancer for what they can answer
    failures = rt.failures
    failing = {name: public_reason(failure) for name, failure in failures.items()}
    details = {
        name: redact(str(failure), rt.settings.resolved_database_url)
        for name, failure in failures.items()
    }
    deployments = {name: e.primary.ref for name, e in rt.endpoints.items()}
    return Readiness(not problems, deployments, failing, problems, details)


def public_reason(failure: Exception) -> str:
    """Why a model cannot load, in words anyone may read: the error's text written to be
    shown, else a generic one (the log has the rest: paths, buckets, a library's message)."""
    if isinstance(failure, RelevoError) and failure.public:
        return str(failure) if failure.public is True else failure.public
    return "its model failed to load (the server log says why)"


def redact(text: str, database_url: str) -> str:
    """`text` without the database URL's user, password, host or port."""
    parts = urlsplit(database_url)
    secrets = [database_url]
    if parts.netloc:
        secrets.append(parts.netloc)
    for piece in (parts.password, parts.username, parts.hostname):
        # a one- or two-letter user name would blank out ordinary words
        if piece and (len(piece) >= 3 or piece is parts.password):
            secrets.append(piece)
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


def failure_body(exc: BaseException, where: str) -> tuple[int, dict[str, Any]]:
    """(status, body) of a server-side failure: what a client may read and a request id; the
    details (message, traceback) go to the server log under that id."""
    request_id = new_request_id()
    if isinstance(exc, RelevoError):
        status = exc.http_status
        log.error("%s failed [request %s]: %s", where, request_id, exc)
        shown = exc.public_message()
    else:  # a model that raises, or a bug: the traceback is worth keeping
        status = 500
        log.error("%s failed [request %s]", where, request_id, exc_info=exc)
        shown = None
    return status, {
        "error": shown or GENERIC.get(status, "internal error"),
        "request_id": request_id,
    }


def observe_failure(rt: Runtime, name: str, protocol: str, status: int, started: float) -> None:
    """Count a request to deployment `name` that was not answered with predictions."""
    endpoint = rt.endpoints.get(name)
    label = name if endpoint is not None else "_unknown"
    model = endpoint.primary.ref if endpoint is not None else ""
    rt.observe(label, model, protocol, status, time.perf_counter() - started)
