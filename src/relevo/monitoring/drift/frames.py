"""`relevo.drift(reference_df, current_df)`: a drift report between two DataFrames, for data
scientists without a server.

Both frames are profiled on the reference's bins exactly as a server profiles its traffic
(the same `DatasetProfile` values, so the report is the one `compare` gives on profiles), one
column at a time and without copying the frames: a numeric column is read in blocks of 65,536
values, so the memory relevo needs beyond the frames stays a few megabytes however many rows
they hold (no float copy of an integer column, no filtered copy of a column with missing
values, no permutation of a column's positions to sample it). What makes it fast on millions
of rows: the bin edges come from the quantiles of a seeded sample of at most 100,000 reference
values (edges only cut the line: the counts in each bin are then exact), and each value's bin
is counted with one vectorised comparison per edge on a block that stays in the cache,
instead of a binary search per value.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

from relevo.errors import InvalidInputError, Problem
from relevo.monitoring.drift.compare import build_report, column_drift
from relevo.monitoring.drift.config import DriftConfig
from relevo.monitoring.drift.report import DriftReport
from relevo.monitoring.numeric import BINS, NumericProfile, _hypergeometric, reference_edges
from relevo.monitoring.profile import CategoricalProfile, ColumnProfile
from relevo.tables import LEADING_ZERO

#: reference values the bin edges are taken from
EDGE_SAMPLE = 100_000
#: raw values kept per column of the current frame for the exact tests on small windows (the
#: tests run only on windows this small, so they see every value)
SAMPLE_SIZE = 1000
#: raw values kept of the reference: one fixed sample serves every comparison, so its own
#: sampling error is not averaged away across windows; 5,000 values make it small
REFERENCE_SAMPLE = 5000
SEED = 0
#: values read at a time (512 KiB of float64): the temporaries of a pass over a column
BLOCK = 1 << 16


def drift(
    reference_df: pd.DataFrame,
    current_df: pd.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    config: DriftConfig | dict | None = None,
) -> DriftReport:
    """Drift of `current_df` against `reference_df`, column by column.

    `columns`: the columns to test (default: every column of the reference); numeric columns
    (numbers, or text that holds numbers) get numeric tests, the others categorical ones.
    `config`: a `DriftConfig` or its dict form (`DriftConfig.from_dict`).
    """
    if isinstance(config, dict):
        config = DriftConfig.from_dict(config)
    for label, frame in (("reference_df", reference_df), ("current_df", current_df)):
        if not isinstance(frame, pd.DataFrame):
            raise InvalidInputError(
                f"{label} must be a pandas DataFrame, not {type(frame).__name__}"
            )
    names = [str(c) for c in reference_df.columns] if columns is None else [str(c) for c in columns]
    names = list(dict.fromkeys(names))  # a column named twice is tested once
    # the frames' own labels by name: a frame made from an array has integer labels
    labels = [_labels(label, frame, names) for label, frame in
              (("reference_df", reference_df), ("current_df", current_df))]  # fmt: skip
    absent = [
        Problem(f"not in {label}", column=n)
        for label, by_name in zip(("reference_df", "current_df"), labels, strict=True)
        for n in names
        if n not in by_name
    ]
    if absent:
        raise InvalidInputError("columns missing from the frames", absent)
    if not names:
        raise InvalidInputError("no column to compare")
    config = config or DriftConfig()
    tested = []
    for name in names:
        ref, cur = _profiles(name, reference_df[labels[0][name]], current_df[labels[1][name]])
        settings = config.column(name)
        if settings.enabled:
            tested.append(column_drift(name, ref, cur, config, settings))
        # the profiles go once tested: their raw samples (40 kB a numeric column) are not
        # held for every column at once
        del ref, cur
    return build_report(tested, config, len(reference_df), len(current_df), baseline="reference")


def _labels(label: str, frame: pd.DataFrame, names: list[str]) -> dict[str, object]:
    """Each column's label in `frame` by its name as text; a name that two of the columns
    tested have is refused (which of them would be compared?)."""
    by_name: dict[str, object] = {}
    twice: set[str] = set()
    for c in frame.columns:
        name = str(c)
        if name in by_name:
            twice.add(name)
        by_name[name] = c
    clash = [n for n in names if n in twice]
    if clash:
        raise InvalidInputError(
            f"{label} has several columns of one name: rename them apart",
            [Problem(f"{label} names this column more than once", column=n) for n in clash],
        )
    return by_name


def _profiles(
    name: str, ref_values: pd.Series, cur_values: pd.Series
) -> tuple[ColumnProfile, ColumnProfile]:
    """The reference's and the current window's profiles of one column, on the reference's
    bins: the same values a server profiles its traffic into. Times and durations are tested
    as numbers (seconds), as their distance matters, not their identity."""
    if _is_time(ref_values.dtype):
        if _time_kind(cur_values.dtype) != _time_kind(ref_values.dtype):
            raise InvalidInputError(
                f"column {name!r} holds {_time_kind(ref_values.dtype)} in the reference but "
                "not in the current data",
                [Problem(f"a {cur_values.dtype} column", column=name)],
            )
        ref_values, cur_values = _seconds(ref_values), _seconds(cur_values)
    numeric = _is_numeric(ref_values)
    if numeric and _text(ref_values) and _text(cur_values) and not _numeric_text(cur_values):
        numeric = False  # numbers as text in one frame only: both compared as text
    if numeric:
        try:
            ref, cur = _Column(ref_values), _Column(cur_values)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"column {name!r} is numeric in the reference but not in the current data",
                [Problem(str(exc), column=name)],
            ) from None
        # bin edges from the quantiles of a sample of the reference (edges only cut the
        # line: the counts in each bin are then exact); the sample is not used again, so
        # the quantiles may reorder it in place instead of copying it
        edge_sample, ref_sample = ref.sample(
            (EDGE_SAMPLE, np.random.default_rng(SEED + 1)),
            (REFERENCE_SAMPLE, np.random.default_rng(SEED)),
        )
        edges = reference_edges(edge_sample, BINS, overwrite=True)
        del edge_sample
        return ref.profile(edges, REFERENCE_SAMPLE, ref_sample), cur.profile(edges)
    return CategoricalProfile.reference(ref_values), CategoricalProfile().update(cur_values)


def _time_kind(dtype: object) -> str | None:
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "times"
    if pd.api.types.is_timedelta64_dtype(dtype):
        return "durations"
    return None


def _text(series: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
        series.dtype
    )


def _numeric_text(series: pd.Series) -> bool:
    """Whether every present value of a text column is a number, none of them a code with
    a leading zero: then its distances matter, and it gets numeric tests."""
    values = series.dropna()
    if values.empty:
        return False
    if values.astype(str).str.match(LEADING_ZERO).any():  # codes, as files read them
        return False
    return bool(pd.to_numeric(values, errors="coerce").notna().all())


def _is_time(dtype: object) -> bool:
    return pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype)


def _seconds(series: pd.Series) -> pd.Series:
    """A time (seconds since 1970, UTC for an aware one) or duration column as float seconds,
    NaN where it is missing."""
    if pd.api.types.is_timedelta64_dtype(series.dtype):
        return series.dt.total_seconds()
    tz = getattr(series.dtype, "tz", None)
    return (series - pd.Timestamp(0, tz=tz)).dt.total_seconds()


def _is_numeric(series: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(series.dtype):
        return False
    if pd.api.types.is_numeric_dtype(series.dtype):
        return True
    # the first 1,000 values present, found block by block (dropna on the whole column
    # would copy it)
    parts, found = [], 0
    for start in range(0, len(series), BLOCK):
        parts.append(series.iloc[start : start + BLOCK].dropna())
        found += len(parts[-1])
        if found >= 1000:
            break
    head = pd.concat(parts).head(1000) if parts else series
    kind = pd.api.types.infer_dtype(head, skipna=True)
    if kind == "string" and len(head) > 0:  # numbers held as text ("1.5"): numbers
        return _numeric_text(series)
    return len(head) > 0 and kind in ("integer", "floating", "mixed-integer-float", "decimal")


class _Column:
    """One numeric column read in blocks of `BLOCK` values as float64: whatever the frame's
    size, profiling it holds a block's worth of temporaries, never a copy of the column."""

    def __init__(self, values: pd.Series | np.ndarray) -> None:
        self.values = values
        # first pass: finite values per block (how the samples are spread) and their sum
        self.finite: list[int] = []
        total = 0.0
        for block, ok in self.blocks():
            n_ok = block.size if ok is None else int(np.count_nonzero(ok))
            self.finite.append(n_ok)
            total += float(block.sum() if ok is None else block[ok].sum())
        self.count = sum(self.finite)
        self.missing = len(values) - self.count
        self.mean = total / self.count if self.count else math.nan

    def blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """(block as float64, its finite mask or None when every value is finite)."""
        values = self.values
        direct = isinstance(values, np.ndarray) or (
            isinstance(values.dtype, np.dtype) and pd.api.types.is_numeric_dtype(values.dtype)
        )
        array = values if isinstance(values, np.ndarray) else values.to_numpy() if direct else None
        for start in range(0, len(values), BLOCK):
            if array is not None:
                block = array[start : start + BLOCK].astype(np.float64, copy=False)
            else:  # extension dtypes, numbers held as text or objects: converted per block
                assert isinstance(values, pd.Series)
                part = values.iloc[start : start + BLOCK]
                if not pd.api.types.is_numeric_dtype(part.dtype):
                    part = pd.to_numeric(part, errors="raise")
                block = part.to_numpy(dtype=np.float64, na_value=np.nan)
            ok = np.isfinite(block)
            yield block, (None if ok.all() else ok)

    def sample(self, *requests: tuple[int, np.random.Generator]) -> list[np.ndarray]:
        """For each (size, generator): a uniform sample without replacement of that many
        finite values (all of them if fewer), in a random order. How many come from each block
        is drawn first (sequential hypergeometric draws), then which ones within the block, so
        no array as long as the column is made."""
        plans = [(rng, _split(rng, self.finite, min(k, self.count))) for k, rng in requests]
        # each sample filled in place, block after block (no list of parts to concatenate)
        out = [np.empty(sum(split)) for _, split in plans]
        filled = [0] * len(plans)
        for i, (block, ok) in enumerate(self.blocks()):
            finite = block if ok is None else block[ok]
            for j, (rng, split) in enumerate(plans):
                n, at = split[i], filled[j]
                if n == finite.size:
                    out[j][at : at + n] = finite
                elif n:
                    np.take(
                        finite, rng.choice(finite.size, n, replace=False), out=out[j][at : at + n]
                    )
                filled[j] = at + n
        for (rng, _), values in zip(plans, out, strict=True):
            rng.shuffle(values)
        return out

    def profile(
        self, edges: np.ndarray, sample_size: int = SAMPLE_SIZE, sample: np.ndarray | None = None
    ) -> NumericProfile:
        """The `NumericProfile` of the column on `edges`: the same counts, moments and range
        as `NumericProfile(edges, 0).update(values)`, and a uniform sample of `sample_size`
        (`sample`: one already drawn)."""
        n_bins = max(edges.size - 1, 1)
        if self.count == 0:
            return NumericProfile(
                edges, np.zeros(n_bins, np.int64), missing=self.missing, sample_size=sample_size
            )
        if sample is None:
            (sample,) = self.sample((sample_size, np.random.default_rng(SEED)))
        inner = edges[1:-1]
        under = np.zeros(inner.size, np.int64)
        below = above = 0
        m2, low, high = 0.0, math.inf, -math.inf
        for block, ok in self.blocks():
            x = block if ok is None else block[ok]
            if x.size == 0:
                continue
            # values under each inner edge (bins are [e_i, e_i+1)): one pass per edge on a
            # block that stays in the cache, no sort
            for i, e in enumerate(inner):
                under[i] += np.count_nonzero(x < e)
            if edges.size:
                below += int(np.count_nonzero(x < edges[0]))
                above += int(np.count_nonzero(x > edges[-1]))
            dev = x - self.mean
            # einsum, not np.dot: a multithreaded BLAS call costs milliseconds of thread
            # wake-ups on a busy machine for what is a short pass
            m2 += float(np.einsum("i,i->", dev, dev))
            low, high = min(low, float(x.min())), max(high, float(x.max()))
        counts = np.diff(np.concatenate([[0], under, [self.count]]))
        return NumericProfile(
            edges,
            counts,
            below=below,
            above=above,
            count=self.count,
            missing=self.missing,
            mean=self.mean,
            m2=m2,
            min=low,
            max=high,
            sample=sample,
            sample_size=sample_size,
            seed=SEED,
        )


def _split(rng: np.random.Generator, sizes: list[int], k: int) -> list[int]:
    """How many of a uniform sample of k items fall in each of consecutive groups of `sizes`."""
    out, left = [], sum(sizes)
    for size in sizes:
        left -= size
        taken = _hypergeometric(rng, size, left, k)
        out.append(taken)
        k -= taken
    return out


def profile_numeric(
    values: pd.Series | np.ndarray, edges: np.ndarray, sample_size: int = SAMPLE_SIZE
) -> NumericProfile:
    """The `NumericProfile` of a numeric column on `edges`: the same counts, moments, range and
    missing values (NaN, None, +-inf) as `NumericProfile(edges, 0).update(values)`, and a
    uniform sample of `sample_size` values."""
    return _Column(values).profile(edges, sample_size)
