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

import numpy as np

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
        prefix = f"{time.time_ns() // 1_000_000:012x}{_state['node']}"
    if n == 1:  # most requests: no comprehension to run
        return [f"{prefix}{start & 0xFFFFFFFF:08x}"]
    return [f"{prefix}{(start + i) & 0xFFFFFFFF:08x}" for i in range(n)]


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_SHIFTS = np.arange(28, -1, -4, dtype=np.uint64)


def new_id_array(n: int) -> Any:
    """`n` fresh prediction ids, as `new_ids` makes them, in a pyarrow string array: built with
    NumPy, no Python str per id (batch scoring's output column)."""
    import pyarrow as pa

    with _lock:
        start = _state["next"]
        _state["next"] = start + n
        prefix = f"{int(time.time() * 1000):012x}{_state['node']}"
    counter = np.arange(start, start + n, dtype=np.uint64) & np.uint64(0xFFFFFFFF)
    cells = np.empty((n, 32), dtype=np.uint8)
    cells[:, :24] = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    cells[:, 24:] = _HEX[(counter[:, None] >> _SHIFTS) & np.uint64(0xF)]
    offsets = np.arange(0, 32 * (n + 1), 32, dtype=np.int64)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(cells)]
    return pa.Array.from_buffers(pa.large_string(), n, buffers)
