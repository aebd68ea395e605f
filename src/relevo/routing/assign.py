"""Which model answers each row: a pure function of the deployment state and the row's key.

With a routing key, a canary's assignment is sticky: the key's bucket is a stable hash
(BLAKE2b) of the deployment name, the challenger and the key's text, mapped to [0, 1) and
compared to the weight. Every replica, and the same replica after a restart, computes the same
bucket, so a customer sees one model throughout; raising the weight only moves keys from the
champion to the challenger (a key's bucket does not change, only the bar it is compared to);
a new challenger reshuffles who goes first. Python's `hash` is salted per process and would
split replicas differently, so it is never used. Rows without a key are split at random.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from hashlib import blake2b
from typing import Any

import numpy as np
import pandas as pd

from relevo.routing.deployment import Deployment

CHAMPION = np.int8(0)
CHALLENGER = np.int8(1)

_SCALE = float(2**64)


def _missing(key: Any) -> bool:
    """None, NaN, or pandas' NA (a nullable column's gap): no key, never the text "<NA>"."""
    return key is None or key is pd.NA or (isinstance(key, float) and math.isnan(key))


def key_text(key: Any) -> str:
    """The text a key is hashed by: `42` and `"42"` (a JSON number or string) route alike."""
    if isinstance(key, (bool, np.bool_)):
        return "true" if key else "false"
    if isinstance(key, (float, np.floating)) and float(key).is_integer():
        return str(int(key))  # 42.0 from a float column is the customer 42
    return str(key)


@lru_cache(maxsize=256)
def _keyed(salt: str) -> Any:
    """The hasher keyed by `salt`, made once per salt (copied per key)."""
    prefix = blake2b(salt.encode(), digest_size=8).digest()
    return blake2b(digest_size=8, key=prefix)


def buckets(salt: str, keys: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Each key's stable position in [0, 1) for `salt`; NaN where the key is missing."""
    hasher = _keyed(salt)
    values = keys.tolist() if isinstance(keys, np.ndarray) else keys
    digests: list[bytes] = []
    missing: list[int] = []
    for i, key in enumerate(values):
        text = _text(key)
        if text is None:
            missing.append(i)
            text = ""
        # one keyed hasher copied per key: cheaper than building a new one (~2 us/row)
        h = hasher.copy()
        h.update(text.encode())
        digests.append(h.digest())
    out = np.frombuffer(b"".join(digests), dtype=">u8") / _SCALE
    if missing:
        out[missing] = np.nan
    return out


def position(salt: str, key: Any) -> float:
    """One key's position, as `buckets` gives it; NaN when the key is missing. Python's
    int-to-float conversion rounds to nearest like NumPy's uint64 cast, and dividing by 2**64 is
    exact, so one key routes alike alone and in a batch (NumPy scalars cost ~1.5 us more)."""
    text = _text(key)
    if text is None:
        return math.nan
    h = _keyed(salt).copy()
    h.update(text.encode())
    return int.from_bytes(h.digest(), "big") / _SCALE


def _text(key: Any) -> str | None:
    if type(key) is str:  # the common cases, kept short
        return key
    if type(key) is int:
        return str(key)
    if _missing(key):
        return None
    return key_text(key)


def _split(
    share: float, salt: str, keys: Sequence[Any] | np.ndarray | None, n: int, rng: Any
) -> np.ndarray:
    """True for the rows that go to the share: by key bucket where there is a key, else random."""
    if share >= 1.0:
        return np.ones(n, dtype=bool)
    if share <= 0.0:
        return np.zeros(n, dtype=bool)
    if keys is None:
        return _rng(rng).random(n) < share
    if len(keys) != n:
        raise ValueError(f"{len(keys)} keys for {n} rows")
    if n == 1:  # a one-row request, the common case: no arrays to build
        one = position(salt, keys[0])
        if math.isnan(one):
            one = float(_rng(rng).random())
        return _ONE_ROW[one < share]
    where = buckets(salt, keys)
    missing = np.isnan(where)
    if missing.any():
        where[missing] = _rng(rng).random(int(missing.sum()))
    return where < share


#: a one-row split, by whether the row goes to the share (read-only: shared by every caller)
_ONE_ROW = (np.zeros(1, dtype=bool), np.ones(1, dtype=bool))
#: the same, as the model that answers (0 the champion, 1 the challenger)
_ONE_ROW_MODEL = (np.zeros(1, dtype=np.int8), np.ones(1, dtype=np.int8))
for _row in (*_ONE_ROW, *_ONE_ROW_MODEL):
    _row.flags.writeable = False

#: the generator of rows without a key; one per process (seeding one from the OS per request
#: cost ~20 us, more than hashing a key)
_RANDOM = np.random.default_rng()


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return _RANDOM if rng is None else rng


def assign(
    state: Deployment,
    keys: Sequence[Any] | np.ndarray | None,
    n: int,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Per row, the model that answers: 0 the champion, 1 the challenger (int8, length n).

    Only a canary sends rows to the challenger; under basic and shadow the champion answers
    every row (a shadow challenger's rows are chosen by `mirror`). `keys` are the rows' routing
    keys (None when the deployment has no key column or the request carries none).
    """
    if state.strategy != "canary" or not state.has_challenger:
        return np.zeros(n, dtype=np.int8)
    share = state.weight
    if n == 1 and 0.0 < share < 1.0 and (keys is None or len(keys) == 1):
        # a one-row request, most of them: one key's position, a shared read-only answer
        one = math.nan if keys is None else position(state.routing_salt, keys[0])
        if one != one:  # no key, or a missing one: at random
            one = _rng(rng).random()
        return _ONE_ROW_MODEL[one < share]
    # a bool array's bytes are 0 and 1: viewed as int8, it is the assignment without a copy
    return _split(share, state.routing_salt, keys, n, rng).view(np.int8)


def mirror(
    state: Deployment,
    keys: Sequence[Any] | np.ndarray | None,
    n: int,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Per row, whether a shadow challenger also scores it (bool, length n): a share `mirror`
    of rows, sticky by key like a canary. False everywhere unless the strategy is shadow."""
    if state.strategy != "shadow" or not state.has_challenger:
        return np.zeros(n, dtype=bool)
    salt = f"{state.name}\x00{state.challenger_ref}\x00mirror"
    return _split(state.mirror, salt, keys, n, rng)
