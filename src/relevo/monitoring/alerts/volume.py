"""The "no predictions" judgement: traffic measured against the deployment's own history.

A fixed quiet period ("no request for 10 minutes") fires every night for a business-hours
deployment and never for one that serves a thousand rows a second. Instead, the expected number
of rows in the current window is read from history, and silence only counts when traffic was
expected:

- the same window on each of the previous `history_days` days (the daily cycle), and
- the `trailing_windows` windows just before the current one (the last hour by default).

Each gives the median of its windows (windows before the deployment's first row do not count);
the expected count is the *lower* of the two, so a quiet night (quiet yesterday at this hour)
or a slow evening (quiet over the last hour) expects nothing. If rows arrived as a Poisson
process at that rate, a window with no row would have probability exp(-expected); the rule
fires when that is below `alpha`, i.e. when at least ln(1/alpha) rows were expected (9.2 at
the default alpha of 1e-4) and none came.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from relevo.monitoring.signals import Signal

RULE = "no_predictions"
#: history windows a median needs before it is trusted
MIN_WINDOWS = 3


@dataclass(frozen=True)
class Volumes:
    """Rows per replica in the current window and in the history windows (None: a window
    before the deployment's first row, which tells nothing)."""

    current: Mapping[str, int]
    seasonal: Sequence[Mapping[str, int] | None]
    trailing: Sequence[Mapping[str, int] | None]


def expected_rows(seasonal: Sequence[int | None], trailing: Sequence[int | None]) -> float | None:
    """The rows the current window should hold (see above); None without enough history."""
    found = []
    for windows in (seasonal, trailing):
        known = [w for w in windows if w is not None]
        if len(known) >= MIN_WINDOWS:
            found.append(float(statistics.median(known)))
    return min(found) if found else None


def minimum_expected(alpha: float) -> float:
    """Expected rows above which an empty window is surprising at level `alpha`."""
    return math.log(1.0 / alpha) if 0 < alpha < 1 else math.inf


def _total(window: Mapping[str, int] | None) -> int | None:
    return None if window is None else sum(window.values())


def _of(window: Mapping[str, int] | None, replica: str) -> int | None:
    return None if window is None else window.get(replica, 0)


def judge(deployment: str, volumes: Volumes, alpha: float, window_s: float) -> list[Signal]:
    """The deployment's signal (subject "") and, when per-replica counts are known, one per
    replica seen in the trailing windows (subject: the replica)."""
    floor = minimum_expected(alpha)
    span = f"{window_s / 60:g} min" if window_s >= 60 else f"{window_s:g} s"
    observed = sum(volumes.current.values())
    expected = expected_rows(
        [_total(w) for w in volumes.seasonal], [_total(w) for w in volumes.trailing]
    )
    out: list[Signal] = []
    if expected is None:
        out.append(
            Signal(deployment, RULE, "", False, "too little history to expect traffic",
                   float(observed), None, evaluable=False)
        )  # fmt: skip
    else:
        firing = observed == 0 and expected >= floor
        message = (
            f"no predictions in the last {span}; {expected:g} expected from its history"
            if firing
            else f"{observed:,} predictions in the last {span} ({expected:g} expected)"
        )
        out.append(Signal(deployment, RULE, "", firing, message, float(observed), expected))
    replicas = sorted({r for w in volumes.trailing if w for r in w if r})
    if len(replicas) < 2:
        return out  # one replica (or unknown ones): the deployment's signal says it all
    # a replica is named by its host and process: one restarted (a rolling update) comes
    # back under a new name, and its old name falls silent. While as many replicas answer
    # now as usually did, a silent name was replaced, not stuck.
    answering = sum(1 for r, n in volumes.current.items() if r and n > 0)
    usual = [sum(1 for r, n in w.items() if r and n > 0) for w in volumes.trailing if w]
    replaced = bool(usual) and answering >= statistics.median(usual)
    for replica in replicas:
        mine = expected_rows([], [_of(w, replica) for w in volumes.trailing])
        if mine is None:
            continue
        got = volumes.current.get(replica, 0)
        others = observed - got
        silent = got == 0 and others > 0 and mine >= floor
        firing = silent and not replaced
        if firing:
            message = (
                f"replica {replica} answered nothing in the last {span} while the others "
                f"answered {others:,} rows ({mine:g} expected)"
            )
        elif silent:
            message = (
                f"replica {replica} answered nothing in the last {span}; {answering} replicas "
                "answer, as many as usual (it was replaced: restarted or rescheduled)"
            )
        else:
            message = f"replica {replica}: {got:,} predictions in the last {span}"
        out.append(Signal(deployment, RULE, replica, firing, message, float(got), mine))
    return out
