"""Notifiers: where notifications go. The log always; a generic JSON webhook and a
Slack-compatible webhook (`{"text": ...}`) when configured, globally (RELEVO_ALERT_WEBHOOK_URL,
RELEVO_ALERT_SLACK_URL) or per deployment (`alerts.webhook_url`, `alerts.slack_url`).

Webhooks are delivered off the evaluation, by one background thread per address, with bounded
timeouts and retries with exponential backoff: a receiver that fails or hangs delays only its
own deliveries, never the evaluation nor the other receivers. A queue that overflows (a
receiver down for a long time) drops its oldest deliveries, with a warning.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from relevo.monitoring.alerts.state import Notification

log = logging.getLogger("relevo.alerts")

#: deliveries waiting per address at most
QUEUE_SIZE = 1000


@dataclass(frozen=True)
class Target:
    """A webhook: its address and its payload format ("json" or "slack")."""

    url: str
    format: str = "json"

    def payload(self, note: Notification) -> dict[str, Any]:
        if self.format == "slack":
            return {"text": note.text()}
        return note.to_dict()


def log_notification(note: Notification) -> None:
    """The log notifier: always on; a firing or escalation at WARNING, a resolution at INFO."""
    level = logging.INFO if note.kind == "resolved" else logging.WARNING
    log.log(level, "%s", note.text())


class _Worker:
    """Delivers to one address, in order, with retries."""

    def __init__(self, dispatcher: Dispatcher, url: str) -> None:
        self.dispatcher = dispatcher
        self.url = url
        self.queue: queue.Queue[tuple[Target, dict[str, Any]] | None] = queue.Queue(QUEUE_SIZE)
        self.thread = threading.Thread(
            target=self.run, name=f"relevo-notifier-{url[:40]}", daemon=True
        )
        self.thread.start()

    def put(self, target: Target, payload: dict[str, Any]) -> None:
        while True:
            try:
                self.queue.put_nowait((target, payload))
                return
            except queue.Full:
                try:
                    self.queue.get_nowait()
                    self.queue.task_done()
                    log.warning(
                        "notifier queue for %s is full: dropped its oldest", shown_url(self.url)
                    )
                except queue.Empty:
                    pass

    def run(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is None:
                    return
                self.dispatcher.deliver(*item)
            finally:
                self.queue.task_done()


class Dispatcher:
    """Sends notifications to the log and the webhooks, in the background."""

    def __init__(
        self,
        *,
        timeout_s: float = 5.0,
        retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 60.0,
        post: Callable[[str, dict[str, Any], float], int] | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._post = post or _post
        self._workers: dict[str, _Worker] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        #: deliveries that succeeded and that were given up, for `relevo alerts evaluate`
        self.delivered = 0
        self.failed = 0

    def send(self, note: Notification, targets: list[Target]) -> None:
        """Log `note` now; queue it for each webhook (never blocks on a receiver)."""
        log_notification(note)
        for target in targets:
            self._worker(target.url).put(target, target.payload(note))

    def _worker(self, url: str) -> _Worker:
        with self._lock:
            worker = self._workers.get(url)
            if worker is None:
                worker = self._workers[url] = _Worker(self, url)
            return worker

    def deliver(self, target: Target, payload: dict[str, Any]) -> bool:
        """Post `payload`, retrying with exponential backoff; whether it got through."""
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                status = self._post(target.url, payload, self.timeout_s)
                if 200 <= status < 300:
                    self.delivered += 1
                    return True
                problem = f"HTTP {status}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt == self.retries or self._closing.wait(delay):
                break
            delay = min(delay * 2, self.max_backoff_s)
        self.failed += 1
        log.warning(
            "notifying %s failed after %d attempts: %s", shown_url(target.url), attempt + 1, problem
        )
        return False

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every queued delivery is done (or `timeout_s`); whether all are."""
        deadline = time.monotonic() + timeout_s
        for worker in list(self._workers.values()):
            while worker.queue.unfinished_tasks:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.01)
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued for up to `timeout_s`, then stop retrying and end the
        threads."""
        self.flush(timeout_s)
        self._closing.set()
        for worker in list(self._workers.values()):
            with worker.queue.mutex:
                worker.queue.queue.clear()
                worker.queue.unfinished_tasks = 0
                worker.queue.all_tasks_done.notify_all()
            worker.queue.put(None)
            worker.thread.join(timeout=timeout_s)


def _post(url: str, payload: dict[str, Any], timeout_s: float) -> int:
    # a fresh client per delivery: deliveries are rare and a dead connection must not linger
    with httpx.Client(timeout=timeout_s, follow_redirects=False) as client:
        return client.post(url, json=payload).status_code


def shown_url(url: str) -> str:
    """A webhook address as logs and token holders may see it: scheme and host only. The rest
    is often the credential itself (a Slack incoming webhook's path, `user:pass@`, `?token=`),
    and whoever holds it can post into the channel."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<an invalid address>"
    hidden = "/..." if (parts.path not in ("", "/") or parts.query or parts.username) else ""
    return f"{parts.scheme}://{host}{port}{hidden}"
