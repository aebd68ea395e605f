"""Batch scoring under a canary: each chunk's rows split between the champion and the challenger
exactly as the API splits a request.

`assign` (the API's own routing) picks each row's model by its routing key, so a customer gets
the same model from a file as over HTTP; rows without a key go at random, in the same share. The
challenger's rows are validated against its own signature when it differs (as the predictor's
`_subset` does); rows it refuses or fails on are answered by the champion and logged with the
role `fallback`, which the rollout gates count as challenger errors. Only a canary splits: under
a basic or shadow deployment the champion answers every row (batch files are not mirrored to a
shadow, docs/serving.md "Batch scoring").
"""

from __future__ import annotations

import threading
import warnings
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from relevo.errors import Problem
from relevo.routing.assign import assign
from relevo.serving.frame_check import CheckedChunk, check_frame
from relevo.serving.outputs import output_names
from relevo.serving.pool import ROLES, Endpoint
from relevo.serving.predictor import FALLBACK
from relevo.serving.runner import ModelRunner
from relevo.serving.validation import Policy


class ChallengerFallbackWarning(UserWarning):
    """A canary's challenger failed on rows of a batch run; the champion answered them."""


class RoutingKeyMissingWarning(UserWarning):
    """Rows of a batch run under a keyed canary had no routing key: they were split at random."""


class Share(NamedTuple):
    """The rows of a chunk one model answers: the model's index in the endpoint's runners (0
    the champion), the role the rows are logged with, their positions in the chunk, and their
    validated values for that model."""

    model: int
    role: str
    idx: np.ndarray
    checked: CheckedChunk


def routes(endpoint: Endpoint) -> bool:
    """Whether batch scoring splits this endpoint's rows: a canary with its challenger loaded."""
    return len(endpoint.runners) > 1 and endpoint.deployment.strategy == "canary"


class Router:
    """Splits a canary's chunks between its models, and counts the challenger's failures."""

    def __init__(self, endpoint: Endpoint, policy: Policy) -> None:
        self.endpoint = endpoint
        self.policy = policy
        champion, challenger = endpoint.runners[0], endpoint.runners[1]
        self._same = challenger.same_input(champion)
        # models with other outputs (another task, other classes): every chunk goes through the
        # split, so that each has every model's output columns
        self._whole = _outputs(champion) != _outputs(challenger)
        #: rows of a keyed deployment without their key (split at random, not sticky)
        self.unkeyed_rows = 0
        #: rows the challenger refused or failed on, and the first reason
        self.fallback_rows = 0
        self.reason: str | None = None
        # refusals are found in the reading thread, failures in the scoring one
        self._lock = threading.Lock()

    def split(self, frame: pd.DataFrame, checked: CheckedChunk) -> list[Share] | None:
        """The chunk's shares, champion first; None when the champion answers every row (the
        caller then scores the chunk as a basic deployment's)."""
        n = len(frame)
        if self.endpoint.deployment.key_column is not None:  # split in the reading thread only
            self.unkeyed_rows += n if checked.keys is None else checked.keys.count(None)
        assignment = assign(self.endpoint.deployment, checked.keys, n)
        if not np.count_nonzero(assignment):
            return [Share(0, ROLES[0], np.arange(n), checked)] if self._whole else None
        mine = np.flatnonzero(assignment == 0)
        theirs = np.flatnonzero(assignment)
        shares = [Share(0, ROLES[0], mine, take(checked, mine))] if mine.size else []
        if self._same:
            return [*shares, Share(1, ROLES[1], theirs, take(checked, theirs))]
        problems: list[Problem] = []
        key = self.endpoint.deployment.key_column
        runner = self.endpoint.runners[1]
        # offset 0: a column the challenger needs and the file lacks is a problem of every chunk
        own = check_frame(frame.iloc[theirs], runner.plan, key, self.policy, 0, problems)
        if own is None:
            first = problems[0] if problems else None
            where = f" (column {first.column})" if first is not None and first.column else ""
            message = f"{first.message}{where}" if first is not None else "invalid input"
            return [*shares, self.fallback(checked, theirs, f"its validation refused: {message}")]
        return [*shares, Share(1, ROLES[1], theirs, own)]

    def fallback(self, checked: CheckedChunk, idx: np.ndarray, reason: str) -> Share:
        """The champion's share of rows the challenger refused or failed on."""
        with self._lock:
            self.fallback_rows += int(idx.size)
            if self.reason is None:
                self.reason = reason
        return Share(0, FALLBACK, idx, take(checked, idx))

    def warn(self, rows: int) -> None:
        """Say once, at the end of a run, how many rows had no routing key, and how many rows
        the champion answered in the challenger's place, and why."""
        if self.unkeyed_rows:
            dep = self.endpoint.deployment
            warnings.warn(
                f"{self.unkeyed_rows:,} of {rows:,} rows had no routing key "
                f"{dep.key_column!r}: deployment {dep.name!r} split them between its models "
                "at random, so the same customer may get another model over HTTP",
                RoutingKeyMissingWarning,
                stacklevel=4,
            )
        if not self.fallback_rows:
            return
        ref = self.endpoint.runners[1].ref
        warnings.warn(
            f"challenger {ref} of {self.endpoint.deployment.name!r} failed on "
            f"{self.fallback_rows:,} of {rows:,} rows; the champion answered them (logged with "
            f"the role fallback, which the rollout gates count as challenger errors). First "
            f"failure: {self.reason}",
            ChallengerFallbackWarning,
            stacklevel=4,
        )


def _outputs(runner: ModelRunner) -> list[str]:
    return output_names(runner.version.task, runner.version.classes)


def take(checked: CheckedChunk, idx: np.ndarray) -> CheckedChunk:
    """The validated rows at positions `idx` of a chunk."""
    numbers, others = checked.part
    picks: list[int] | None = None
    columns: dict[str, Any] = {}
    for name, values in others.items():
        if type(values) is list:
            picks = idx.tolist() if picks is None else picks
            columns[name] = [values[i] for i in picks]
        else:  # a file's text column: the pandas array as read
            columns[name] = values.take(idx)
    keys = checked.keys
    if keys is not None:
        picks = idx.tolist() if picks is None else picks
        keys = [keys[i] for i in picks]
    return CheckedChunk((numbers[idx], columns), keys, checked.quality)
