"""`relevo.drift(reference_df, current_df)`: a drift report between two DataFrames, for data
scientists without a server.

Both frames are profiled on the reference's bins exactly as a server profiles its traffic
(the same `DatasetProfile` values, so the report is the one `compare` gives on profiles), one
column at a time and without copying the frames. What makes it fast on millions of rows: the
bin edges come from the quantiles of a seeded sample of at most 100,000 reference values
(edges only cut the line: the counts in each bin are then exact), and each value's bin is
counted with one vectorised comparison per edge instead of a binary search per value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from relevo.errors import InvalidInputError, Problem
from relevo.monitoring.drift.compare import compare
from relevo.monitoring.drift.config import DriftConfig
from relevo.monitoring.drift.report import DriftReport
from relevo.monitoring.numeric import NumericProfile, reference_edges
from relevo.monitoring.profile import CategoricalProfile, ColumnProfile, DatasetProfile
from relevo.monitoring.reference import BINS  # the bins registration profiles a reference on

#: reference values the bin edges are taken from
EDGE_SAMPLE = 100_000
#: raw values kept per column of the current frame for the exact tests on small windows (the
#: tests run only on windows this small, so they see every value)
SAMPLE_SIZE = 1000
#: raw values kept of the reference: one fixed sample serves every comparison, so its own
#: sampling error is not averaged away across windows; 5,000 values make it small
REFERENCE_SAMPLE = 5000
SEED = 0


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
    absent = [
        Problem(f"not in {label}", column=n)
        for label, frame in (("reference_df", reference_df), ("current_df", current_df))
        for n in names
        if n not in frame.columns
    ]
    if absent:
        raise InvalidInputError("columns missing from the frames", absent)
    if not names:
        raise InvalidInputError("no column to compare")
    ref_cols: dict[str, ColumnProfile] = {}
    cur_cols: dict[str, ColumnProfile] = {}
    for name in names:
        ref_values, cur_values = reference_df[name], current_df[name]
        if _is_numeric(ref_values):
            try:
                ref_x, ref_missing = _finite(ref_values)
                cur_x, cur_missing = _finite(cur_values)
            except (TypeError, ValueError) as exc:
                raise InvalidInputError(
                    f"column {name!r} is numeric in the reference but not in the current data",
                    [Problem(str(exc), column=name)],
                ) from None
            edges = _edges(ref_x)
            ref_cols[name] = profile_numeric(ref_x, ref_missing, edges, REFERENCE_SAMPLE)
            cur_cols[name] = profile_numeric(cur_x, cur_missing, edges)
        else:
            ref_cols[name] = CategoricalProfile.reference(ref_values)
            cur_cols[name] = CategoricalProfile().update(cur_values)
    reference = DatasetProfile(len(reference_df), ref_cols)
    current = DatasetProfile(len(current_df), cur_cols)
    return compare(reference, current, config, baseline="reference")


def _is_numeric(series: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(series.dtype):
        return False
    if pd.api.types.is_numeric_dtype(series.dtype):
        return True
    head = series.dropna().head(1000)
    kind = pd.api.types.infer_dtype(head, skipna=True)
    return len(head) > 0 and kind in ("integer", "floating", "mixed-integer-float", "decimal")


def _finite(series: pd.Series) -> tuple[np.ndarray, int]:
    """The finite values as float64 (no copy when there is nothing to drop) and how many were
    missing (NaN, None, +-inf)."""
    if pd.api.types.is_numeric_dtype(series.dtype) and isinstance(series.dtype, np.dtype):
        x = series.to_numpy().astype(np.float64, copy=False)
    else:
        x = pd.to_numeric(series, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    ok = np.isfinite(x)
    n_ok = int(np.count_nonzero(ok))
    return (x, 0) if n_ok == x.size else (x[ok], x.size - n_ok)


def _edges(x: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    sample = x if x.size <= EDGE_SAMPLE else x[rng.choice(x.size, EDGE_SAMPLE, replace=False)]
    return reference_edges(sample, BINS)


def profile_numeric(
    x: np.ndarray, missing: int, edges: np.ndarray, sample_size: int = SAMPLE_SIZE
) -> NumericProfile:
    """The `NumericProfile` of finite values `x` on `edges`: the same counts, moments and
    range as `NumericProfile(edges, 0).update(x)`, and a uniform sample of `sample_size`."""
    n_bins = max(edges.size - 1, 1)
    if x.size == 0:
        return NumericProfile(
            edges, np.zeros(n_bins, np.int64), missing=missing, sample_size=sample_size
        )
    inner = edges[1:-1]
    # values under each inner edge (bins are [e_i, e_i+1)): one pass per edge, no sort
    under = np.fromiter((np.count_nonzero(x < e) for e in inner), np.int64, inner.size)
    counts = np.diff(np.concatenate([[0], under, [x.size]]))
    below = int(np.count_nonzero(x < edges[0])) if edges.size else 0
    above = int(np.count_nonzero(x > edges[-1])) if edges.size else 0
    mean = float(x.mean())
    dev = x - mean
    # einsum, not np.dot: a multithreaded BLAS call costs milliseconds of thread wake-ups on
    # a busy machine for what is a 1 ms pass over a million values
    m2 = float(np.einsum("i,i->", dev, dev))
    del dev
    rng = np.random.default_rng(SEED)
    sample = x if x.size <= sample_size else x[rng.choice(x.size, sample_size, replace=False)]
    return NumericProfile(
        edges,
        counts,
        below=below,
        above=above,
        count=int(x.size),
        missing=missing,
        mean=mean,
        m2=m2,
        min=float(x.min()),
        max=float(x.max()),
        sample=sample,
        sample_size=sample_size,
        seed=SEED,
    )
