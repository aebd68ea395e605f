"""Draining on SIGTERM: readiness fails at once, the server keeps answering for a while, then
stops gracefully (in-flight requests finish, the prediction log is flushed).

An orchestrator sends SIGTERM and, at about the same time, takes the pod out of its load
balancers; the two race. `/readyz` answering 503 from the first SIGTERM tells every balancer
that polls it, and `RELEVO_SHUTDOWN_DRAIN_S` keeps the listener open meanwhile so requests that
still arrive are answered rather than refused. Only then does uvicorn's own shutdown start.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from types import FrameType
from typing import Any

log = logging.getLogger("relevo.server")


class Drain:
    """The SIGTERM hook of one server process: `draining` turns True at the first SIGTERM."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.draining = False
        self._previous: Any = None
        self._installed = False

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Put this hook in front of the server's own SIGTERM handler (main thread only: a
        server run inside a thread, as in tests and notebooks, keeps its handlers)."""
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return  # no server handler to hand over to: the default action stays
        self._previous = previous

        def on_term(sig: int, frame: FrameType | None) -> None:
            if self.draining:  # a second SIGTERM: stop now
                previous(sig, frame)
                return
            self.draining = True
            log.info("SIGTERM: not ready any more; stopping in %.1f s", self.seconds)
            if self.seconds > 0:
                loop.call_soon_threadsafe(loop.call_later, self.seconds, previous, sig, frame)
            else:
                previous(sig, frame)

        signal.signal(signal.SIGTERM, on_term)
        self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False
