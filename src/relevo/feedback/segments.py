"""Worst segments: the groups of rows where a model is wrong much more often than elsewhere.

`worst_segments(features, errors, reference=profile)` slices the rows by one feature and by
every pair of features, on the reference profile's bins:

* a numeric feature is cut on its `NumericProfile.edges`, and every run of adjacent bins is a
  candidate ("tenure_months < 6" rather than three bins, "20 <= age < 30"), plus "is missing";
* a categorical feature gives one slice per reference category, one for categories the
  reference never saw ("not in reference") and one for missing values.

Each slice is tested against its complement (the rest of the rows), one-sided: is its error
higher? Errors of 0/1 use the pooled two-proportion z-test, per-row losses Welch's t-test. All
slices with at least `min_support` rows on each side are tested (0/1 errors: where a slice could
be significant, Fisher's exact one-sided p-value replaces the z-test's, whose normal tail is too
thin for small slices with rare errors), and the p-values adjusted
together by Benjamini-Hochberg: `significant` means an adjusted p-value (`q_value`) <= alpha, so
among the slices called significant the expected share of flukes is at most alpha. A pair is
only tested when each of its conditions removes at least a tenth of the rows the other keeps
(otherwise it says no more than the single condition).

Slices are ranked by `gap_low`, the lower confidence bound (1 - alpha, one-sided) of their gap:
big gaps measured on many rows first, a large gap on a few rows behind a firm one on many.
Overlapping slices describe the same customers: a slice with half or more of its rows in an
earlier-ranked one is left out, so the list names different groups.

With `expected` (the error each row was expected to have, e.g. min(p, 1 - p) misclassification
chance of a calibrated classifier), the test is on the excess error (errors - expected):
segments where the model does worse than it itself predicted, so a segment that is merely
hard (scores near 0.5) is not reported as the model going wrong.

Everything is vectorised: one bincount per feature and per pair of features over integer bin
codes, then the run-of-bins slices by a small matrix product over the bins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from relevo.errors import InvalidInputError
from relevo.feedback.slices import Condition, Feature, categories, encode
from relevo.monitoring.profile import CategoricalProfile, DatasetProfile

__all__ = ["Condition", "Segment", "worst_segments"]

#: each condition of a pair must drop at least this share of the rows the other keeps
_PAIR_MIN_CUT = 0.1
#: a slice with at least this share of its rows in an earlier-ranked one is the same group
_SAME_GROUP = 0.5
#: how many ranked candidates to look through for distinct groups
_MAX_CANDIDATES = 2000


@dataclass(frozen=True)
class Segment:
    """A slice of the rows and how much worse the model does there than overall."""

    conditions: tuple[str, ...]
    rows: int
    error: float
    overall_error: float
    #: error - overall_error (with `expected`: the same, less the expected errors)
    gap: float
    #: one-sided p-value of the slice against the rest, before adjustment
    p_value: float
    significant: bool
    rest_error: float
    #: lower confidence bound of `gap`; the ranking key
    gap_low: float
    #: Benjamini-Hochberg adjusted p-value over the `tested` slices
    q_value: float
    tested: int
    expected_error: float | None
    filters: tuple[Condition, ...]

    def mask(self, frame: pd.DataFrame, reference: DatasetProfile) -> np.ndarray:
        """Which rows of `frame` belong to the segment."""
        out = np.ones(len(frame), dtype=bool)
        for condition in self.filters:
            column = reference.columns[condition.feature]
            known = categories(column) if isinstance(column, CategoricalProfile) else []
            out &= condition.mask(frame, known)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "conditions": list(self.conditions),
            "rows": self.rows,
            "error": self.error,
            "rest_error": self.rest_error,
            "overall_error": self.overall_error,
            "expected_error": self.expected_error,
            "gap": self.gap,
            "gap_low": _num(self.gap_low),
            "p_value": self.p_value,
            "q_value": self.q_value,
            "significant": self.significant,
            "tested": self.tested,
            "filters": [c.to_dict() for c in self.filters],
        }


#: rows a slice and the rest each need at least, by default, to be tested
MIN_SUPPORT = 100
#: the false discovery rate the slices called significant keep to, by default
ALPHA = 0.05


def worst_segments(
    features: pd.DataFrame,
    errors: np.ndarray,
    *,
    reference: DatasetProfile,
    min_support: int = MIN_SUPPORT,
    alpha: float = ALPHA,
    max_results: int = 10,
    expected: np.ndarray | None = None,
) -> list[Segment]:
    """The slices where `errors` (1.0 where the model was wrong, or a per-row loss >= 0) are
    highest against the rest, ranked (see the module docstring); significant ones first."""
    from scipy import stats  # imported when needed: the CLI starts faster

    e = _errors("errors", errors, len(features))
    x = None if expected is None else _errors("expected", expected, len(features))
    if min_support < 1:
        raise InvalidInputError(f"min_support must be at least 1, got {min_support!r}")
    if not 0.0 < alpha < 1.0:
        raise InvalidInputError(f"alpha must be between 0 and 1, got {alpha!r}")
    if max_results < 1:
        raise InvalidInputError(f"max_results must be at least 1, got {max_results!r}")
    names = [name for name in reference.columns if name in features.columns]
    if not names:
        raise InvalidInputError(
            "features has none of the reference's columns: "
            f"{', '.join(list(reference.columns)[:10])}"
        )
    n = len(features)
    if n == 0:
        return []
    cols = [encode(name, features[name], reference.columns[name]) for name in names]
    r = e if x is None else e - x
    binary = x is None and bool(np.all((e == 0.0) | (e == 1.0)))
    weights = [None, r] if binary else [None, r, r * r]
    # 0/1 errors: one integer bincount per pair counts rows and errors (code * 2 + error)
    with_error: list[np.ndarray] = []
    if binary:
        flags = r.astype(np.int64)
        with_error = [col.codes * 2 + flags for col in cols[1:]]  # 8 bytes a row each

    blocks: list[tuple[tuple[int, ...], np.ndarray]] = []  # (features, stats per slice)
    singles: list[np.ndarray] = []
    for i, col in enumerate(cols):
        sums = [np.bincount(col.codes, weights=w, minlength=col.levels) for w in weights]
        s = np.stack([col.expand(t, 0) for t in sums], axis=-1)
        singles.append(s[:, 0])
        blocks.append(((i,), s))
    for i, j in combinations(range(len(cols)), 2):
        a, b = cols[i], cols[j]
        shape = (a.levels, b.levels)
        if binary:
            both = np.bincount(
                a.codes * (2 * b.levels) + with_error[j - 1], minlength=2 * b.levels * a.levels
            )
            both = both.reshape(*shape, 2).astype(np.float64)
            sums = [both.sum(axis=-1), both[..., 1]]
        else:
            combined = a.codes * b.levels + b.codes
            sums = [
                np.bincount(combined, weights=w, minlength=a.levels * b.levels).reshape(shape)
                for w in weights
            ]
        s = np.stack([b.expand(a.expand(t, 0), 1) for t in sums], axis=-1)
        n_ab = s[..., 0]
        narrower = np.minimum(singles[i][:, None], singles[j][None, :])
        s[n_ab > (1.0 - _PAIR_MIN_CUT) * narrower] = 0.0  # count 0: not tested
        blocks.append(((i, j), s.reshape(-1, s.shape[-1])))

    totals = np.array([n, r.sum(), *([] if binary else [(r * r).sum()])])
    owner = np.concatenate([np.full(len(s), k) for k, (_, s) in enumerate(blocks)])
    index = np.concatenate([np.arange(len(s)) for _, s in blocks])
    table = np.concatenate([s for _, s in blocks])
    counts = table[:, 0]
    tested = (counts >= min_support) & (n - counts >= min_support)
    if not tested.any():
        return []
    owner, index, table = owner[tested], index[tested], table[tested]
    diff, se, p_value, df = _test(table, totals, binary, alpha)
    q_value = stats.false_discovery_control(p_value, method="bh")
    crit = stats.norm.ppf(1 - alpha) if binary else stats.t.ppf(1 - alpha, df)
    share = 1.0 - table[:, 0] / n  # error - overall = (1 - share of rows) * (error - rest)
    gap = share * diff
    gap_low = share * (diff - crit * se)
    significant = q_value <= alpha
    score = np.nan_to_num(table[:, 0] * gap_low, nan=-np.inf)  # surplus errors, lower bound
    order = np.lexsort((-score, ~significant))
    order = order[gap[order] > 0][:_MAX_CANDIDATES]

    overall_e = float(e.mean())
    chosen: list[tuple[np.ndarray, Segment]] = []
    cache: dict[tuple[int, int], np.ndarray] = {}
    for k in order:
        picks = _picks(blocks[owner[k]][0], int(index[k]), cols)
        bits = [_bits(cols[f], option, cache, f) for f, option in picks]
        packed = bits[0] if len(bits) == 1 else bits[0] & bits[1]
        rows = int(table[k, 0])
        if any(_shared(packed, other) >= _SAME_GROUP * rows for other, _ in chosen):
            continue  # mostly customers an earlier segment already names
        mask = np.unpackbits(packed.view(np.uint8), count=n).view(bool)
        chosen.append(
            (
                packed,
                Segment(
                    conditions=tuple(str(cols[f].conditions[o]) for f, o in picks),
                    rows=rows,
                    error=float(e[mask].mean()),
                    overall_error=overall_e,
                    gap=float(gap[k]),
                    p_value=float(p_value[k]),
                    significant=bool(significant[k]),
                    rest_error=float(e[~mask].mean()),
                    gap_low=float(gap_low[k]),
                    q_value=float(q_value[k]),
                    tested=len(table),
                    expected_error=None if x is None else float(x[mask].mean()),
                    filters=tuple(cols[f].conditions[o] for f, o in picks),
                ),
            )
        )
        if len(chosen) == max_results:
            break
    return [seg for _, seg in chosen]


def _test(
    table: np.ndarray, totals: np.ndarray, binary: bool, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean difference slice - rest, its (unpooled) standard error, one-sided p and df."""
    from scipy import stats  # imported when needed: the CLI starts faster

    n_s, sum_s = table[:, 0], table[:, 1]
    n_c, sum_c = totals[0] - n_s, totals[1] - sum_s
    mean_s, mean_c = sum_s / n_s, sum_c / n_c
    diff = mean_s - mean_c
    with np.errstate(invalid="ignore", divide="ignore"):
        if binary:
            var_s, var_c = mean_s * (1 - mean_s), mean_c * (1 - mean_c)
            pooled = totals[1] / totals[0]
            se0 = np.sqrt(pooled * (1 - pooled) * (1 / n_s + 1 / n_c))
            p = stats.norm.sf(diff / se0)
            # The normal tail is too thin for small slices with rare errors, and the
            # Benjamini-Hochberg cut-off lives in that tail: where a slice could be
            # significant, take Fisher's exact one-sided p-value (hypergeometric) instead.
            near = np.flatnonzero(p <= 2 * alpha)
            p[near] = stats.hypergeom.sf(
                np.rint(sum_s[near]) - 1, totals[0], np.rint(totals[1]), n_s[near]
            )
            df = np.full(len(n_s), np.inf)
        else:
            ss_s = table[:, 2]
            ss_c = totals[2] - ss_s
            var_s = np.maximum(ss_s - n_s * mean_s**2, 0.0) / (n_s - 1)
            var_c = np.maximum(ss_c - n_c * mean_c**2, 0.0) / (n_c - 1)
            a, b = var_s / n_s, var_c / n_c
            df = (a + b) ** 2 / (a**2 / (n_s - 1) + b**2 / (n_c - 1))
            p = stats.t.sf(diff / np.sqrt(a + b), df)
        se = np.sqrt(var_s / n_s + var_c / n_c)
    return diff, se, np.nan_to_num(p, nan=1.0), df


def _picks(parts: tuple[int, ...], flat: int, cols: list[Feature]) -> list[tuple[int, int]]:
    """(feature, slice) per condition of candidate `flat` of the block over `parts`."""
    if len(parts) == 1:
        return [(parts[0], flat)]
    i, j = parts
    a, b = divmod(flat, len(cols[j].options))
    return [(i, a), (j, b)]


def _bits(
    col: Feature, option: int, cache: dict[tuple[int, int], np.ndarray], feature: int
) -> np.ndarray:
    """The rows of one slice as packed bits (uint64 words), so overlaps cost a few microseconds."""
    key = (feature, option)
    if key not in cache:
        packed = np.packbits((col.options[option] > 0)[col.codes])
        cache[key] = np.pad(packed, (0, -packed.size % 8)).view(np.uint64)
    return cache[key]


def _shared(a: np.ndarray, b: np.ndarray) -> int:
    """How many rows two packed slices share."""
    return int(np.bitwise_count(a & b).sum())


def _errors(name: str, values: Any, n: int) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be numbers: {exc}") from None
    if arr.shape != (n,):
        raise InvalidInputError(
            f"{name} must hold one value per row of features ({n}), got {arr.shape}"
        )
    bad = np.flatnonzero(~(np.isfinite(arr) & (arr >= 0.0)))
    if bad.size:
        raise InvalidInputError(
            f"{name} must be finite and >= 0: row {int(bad[0])} is {float(arr[bad[0]])!r} "
            f"({bad.size} such rows)"
        )
    return arr


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
