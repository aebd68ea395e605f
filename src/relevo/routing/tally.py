"""A deployment's per-model numbers (rows, and latency quantiles) kept up to date from the
prediction log by reading only what is new.

The rollout evaluator looks about once a second. Counting the rows and sorting the latencies of
every row since the challenger was deployed at each look grows with the canary's age: at a
million logged rows one look took 4.4 s on SQLite, so a long canary kept a core busy and its
gates looked every few seconds instead of every second. A `Tally` instead folds the rows of each
closed stretch of time into running counts and a latency histogram once, and at each look reads
only the last `SETTLE_S` seconds, whose rows may still be on their way from a replica's log
writer (the writers flush about once a second; a row that reaches the store more than
`SETTLE_S` after it was answered, or from a replica whose clock is that far behind, is missed
by the gates, not by the log).

Latencies are kept on log-spaced buckets (`GAMMA` = 1.01 apart), the way DDSketch does: a
quantile read from them is within 0.5 % of the exact nearest-rank quantile of the same rows,
and histograms of any slices merge exactly. A batch run's rows (`relevo predict`) count as rows
but add no latency: theirs is their chunk's model call, no request's (an arm's `latencies.n` is
its rows with a request's latency). A `fallback` row is kept apart by the challenger that
failed on it (the key's last part; None on other rows and on fallback rows stored before the
log named it), so a challenger is charged with its own failures alone.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from relevo.store import Store

#: rows answered less than this long ago are read at every look, folded in once older
SETTLE_S = 10.0
#: the ratio between neighbouring latency buckets: quantiles within (GAMMA-1)/(GAMMA+1) ~ 0.5 %
GAMMA = 1.01
_LOG_GAMMA = math.log(GAMMA)
#: tallies kept per process (deployments x the starts they are asked for), least recent dropped
MAX_TALLIES = 64

#: (model name, model version, role, the challenger a fallback row fell back from or None)
Key = tuple[str, int, str, str | None]


@dataclass
class Latencies:
    """A mergeable histogram of latencies (ms) on log-spaced buckets: bucket i holds the values
    in (GAMMA**(i-1), GAMMA**i]; values <= 0 are counted apart."""

    counts: dict[int, int] = field(default_factory=dict)
    zeros: int = 0
    n: int = 0

    def add(self, values: np.ndarray) -> None:
        if not values.size:
            return
        positive = values[values > 0]
        self.zeros += int(values.size - positive.size)
        self.n += int(values.size)
        if positive.size:
            buckets, counts = np.unique(
                np.ceil(np.log(positive) / _LOG_GAMMA).astype(np.int64), return_counts=True
            )
            for b, c in zip(buckets.tolist(), counts.tolist(), strict=True):
                self.counts[b] = self.counts.get(b, 0) + c

    def merged(self, other: Latencies) -> Latencies:
        out = Latencies(dict(self.counts), self.zeros + other.zeros, self.n + other.n)
        for b, c in other.counts.items():
            out.counts[b] = out.counts.get(b, 0) + c
        return out

    def quantile(self, q: float) -> float | None:
        """The nearest-rank `q` quantile (the `int(n (1 - q)) + 1`-th largest value), as its
        bucket's midpoint: within 0.5 % of the exact one. None without values."""
        if not self.n:
            return None
        above = int(self.n * (1.0 - q))
        seen = 0
        for b in sorted(self.counts, reverse=True):
            seen += self.counts[b]
            if seen > above:
                return 2.0 * GAMMA**b / (GAMMA + 1.0)
        return 0.0


@dataclass
class Arm:
    """One (model, role[, challenger])'s rows and the latencies of those answered by a
    request."""

    rows: int = 0
    latencies: Latencies = field(default_factory=Latencies)

    def merged(self, other: Arm) -> Arm:
        return Arm(self.rows + other.rows, self.latencies.merged(other.latencies))


class Tally:
    """The arms of one deployment's rows logged since `start` (None: ever)."""

    def __init__(self, deployment: str, start: datetime | None) -> None:
        self.deployment = deployment
        self.start = start
        #: rows logged before this were folded into `closed` (None: nothing folded yet)
        self.closed_until: datetime | None = None
        self.closed: dict[Key, Arm] = {}
        self._lock = threading.Lock()

    def look(self, store: Store, now: datetime | None = None) -> dict[Key, Arm]:
        """Every arm's numbers now: the closed stretch, plus the rows of the last `SETTLE_S`."""
        now = now or datetime.now(UTC)
        settle = now - timedelta(seconds=SETTLE_S)
        with self._lock:
            begin = self.start if self.closed_until is None else self.closed_until
            if begin is None or settle > begin:
                _fold(self.closed, store.arms.logged(self.deployment, begin, settle))
                self.closed_until = begin = settle
            out = dict(self.closed)
        _fold(out, store.arms.logged(self.deployment, begin, None))
        return out


def _fold(arms: dict[Key, Arm], rows: list[tuple[str, int, str, float | None, str | None]]) -> None:
    """Add logged rows (model name, version, role, latency, None for a batch run's row, and
    challenger) to `arms`: each arm they touch is replaced by a merged one, never changed in
    place (a look hands out the arms it holds)."""
    by_key: dict[Key, list[float | None]] = {}
    for name, version, role, latency, challenger in rows:
        by_key.setdefault((name, version, role, challenger), []).append(latency)
    for key, values in by_key.items():
        added = Arm(len(values))
        latencies = np.asarray(values, dtype=np.float64)  # None: NaN
        added.latencies.add(latencies[~np.isnan(latencies)])
        arms[key] = arms[key].merged(added) if key in arms else added


_tallies: OrderedDict[tuple[object, ...], Tally] = OrderedDict()
_tallies_lock = threading.Lock()


def tally(store: Store, deployment: str, start: datetime | None) -> Tally:
    """This process's tally of `deployment` since `start` in `store` (made on first use)."""
    key = (id(store), store.url, deployment, start)
    with _tallies_lock:
        found = _tallies.get(key)
        if found is None:
            found = _tallies[key] = Tally(deployment, start)
            while len(_tallies) > MAX_TALLIES:
                _tallies.popitem(last=False)
        else:
            _tallies.move_to_end(key)
        return found
