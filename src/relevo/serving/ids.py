"""Prediction ids: unique across processes and sortable by time (to the millisecond).

32 hex characters: 12 for the Unix time in ms, 12 for a random per-process node, 8 for a
per-process counter. Sorting ids sorts predictions by creation time.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from typing import Any

_state: dict[str, Any] = {"node": secrets.token_hex(6), "next": 0}
_lock = threading.Lock()


def _reset_after_fork() -> None:
    _state["node"] = secrets.token_hex(6)
    _state["next"] = 0


os.register_at_fork(after_in_child=_reset_after_fork)


def new_ids(n: int) -> list[str]:
    """`n` fresh prediction ids, in increasing order."""
    with _lock:
        start = _state["next"]
        _state["next"] = start + n
        prefix = f"{int(time.time() * 1000):012x}{_state['node']}"
    return [f"{prefix}{(start + i) & 0xFFFFFFFF:08x}" for i in range(n)]
