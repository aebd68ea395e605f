"""`compare`: drift of a current profile against a baseline profile on the same bins.

Each column gets the test its `DriftConfig` chooses (by type and by the number of values in
the current window), then the p-value tests are corrected for the number of features so
tested (Bonferroni), and the report counts the share of drifted features.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from relevo.errors import InvalidInputError
from relevo.monitoring.drift.categorical import aligned_counts, chi_square
from relevo.monitoring.drift.config import P_VALUE_METHODS, ColumnConfig, DriftConfig
from relevo.monitoring.drift.distances import jensen_shannon, psi, shares
from relevo.monitoring.drift.numeric import (
    bin_counts,
    bin_labels,
    binned_wasserstein,
    ks_binned,
    ks_samples,
)
from relevo.monitoring.drift.report import DriftReport, FeatureDrift
from relevo.monitoring.numeric import NumericProfile
from relevo.monitoring.profile import CategoricalProfile, ColumnProfile, DatasetProfile

#: categories a report plots by name; the rest are summed into one bar
PLOTTED_CATEGORIES = 20


def compare(
    reference: DatasetProfile,
    current: DatasetProfile,
    config: DriftConfig | None = None,
    *,
    prediction: tuple[DatasetProfile, DatasetProfile] | None = None,
    multivariate: tuple[NumericProfile | None, NumericProfile | None] | None = None,
    columns: list[str] | None = None,
    **context: Any,
) -> DriftReport:
    """Drift of `current` against `reference` (both profiled on the reference's bins).

    `prediction`: the (baseline, current) profiles of the model's output, tested like a
    feature but apart from the features' share; `multivariate`: the (baseline, current)
    profiles of the reconstruction error; `columns`: the features to test (default: every
    column of the reference). `context` fills the report's deployment, model, baseline,
    since and until.
    """
    config = config or DriftConfig()
    names = list(reference.columns) if columns is None else list(columns)
    unknown = [n for n in names if n not in reference.columns]
    if unknown:
        raise InvalidInputError(f"columns not in the reference profile: {unknown}")
    tested = [
        column_drift(n, reference.columns[n], current.columns.get(n), config, config.column(n))
        for n in names
        if config.column(n).enabled
    ]
    pred = None
    if prediction is not None and config.prediction.enabled:
        ref_p, cur_p = prediction
        if ref_p.columns:
            name = next(iter(ref_p.columns))
            pred = column_drift(
                name,
                ref_p.columns[name],
                cur_p.columns.get(name),
                config,
                config.prediction,
                key="prediction",
            )
    multi = None
    ref_m, cur_m = multivariate if multivariate is not None else (None, None)
    if ref_m is not None and config.multivariate.enabled:
        multi = column_drift(
            "multivariate", ref_m, cur_m, config, config.multivariate, key="multivariate"
        )
    return build_report(
        tested,
        config,
        reference.n_rows,
        current.n_rows,
        prediction=pred,
        multivariate=multi,
        **context,
    )


def build_report(
    tested: list[FeatureDrift],
    config: DriftConfig,
    reference_rows: int,
    current_rows: int,
    *,
    prediction: FeatureDrift | None = None,
    multivariate: FeatureDrift | None = None,
    **context: Any,
) -> DriftReport:
    """The report of the features' tests (`column_drift`, before any correction), corrected
    for multiple tests as `config` says."""
    return DriftReport(
        features=tuple(corrected(tested, config)),
        prediction=prediction,
        multivariate=multivariate,
        dataset_share=config.dataset_share,
        reference_rows=reference_rows,
        current_rows=current_rows,
        config=config.to_dict(),
        **context,
    )


def corrected(tested: list[FeatureDrift], config: DriftConfig) -> list[FeatureDrift]:
    """The features' verdicts after the correction for multiple p-value tests."""
    k = sum(1 for f in tested if f.evaluable and f.is_p_value)
    if config.correction != "bonferroni" or k <= 1:
        return tested
    out = []
    for f in tested:
        if f.evaluable and f.is_p_value and f.p_value is not None:
            level = f.threshold / k
            f = replace(f, threshold=level, drifted=f.p_value < level)
        out.append(f)
    return out


def column_drift(
    name: str,
    reference: ColumnProfile,
    current: ColumnProfile | None,
    config: DriftConfig,
    settings: ColumnConfig,
    key: str | None = None,
) -> FeatureDrift:
    """One column's test, before any correction for multiple tests. `key`: where its settings
    are in the drift settings (`features.NAME` unless given), named when they do not fit it."""
    key = key or f"features.{name}"
    if current is None:
        current = reference.empty_like()
    if type(reference) is not type(current):
        raise InvalidInputError(f"column {name!r} is numeric in one profile only")
    if isinstance(reference, NumericProfile):
        assert isinstance(current, NumericProfile)
        return _numeric(name, reference, current, config, settings, key)
    assert isinstance(reference, CategoricalProfile) and isinstance(current, CategoricalProfile)
    return _categorical(name, reference, current, config, settings, key)


def _numeric(
    name: str,
    ref: NumericProfile,
    cur: NumericProfile,
    config: DriftConfig,
    settings: ColumnConfig,
    key: str,
) -> FeatureDrift:
    method, threshold = config.choose(settings, "numeric", cur.count, key=key)
    ref_bins, cur_bins = bin_counts(ref), bin_counts(cur)
    keep = (ref_bins + cur_bins) > 0
    keep[1:-1] = True  # the reference's own bins always show; outside its range only if used
    base = FeatureDrift(
        feature=name,
        kind="numeric",
        method=method,
        statistic=None,
        threshold=threshold,
        drifted=False,
        reference_rows=ref.count,
        current_rows=cur.count,
        bins=tuple(np.array(bin_labels(ref), dtype=object)[keep]),
        reference_shares=tuple(float(s) for s in shares(ref_bins)[keep]),
        current_shares=tuple(float(s) for s in shares(cur_bins)[keep]),
    )
    short = _too_few(ref.count, cur.count, config.min_rows)
    if short:
        return replace(base, evaluable=False, note=short)
    if method == "ks":
        # on every value when the window's sample holds them all; else on their bin counts
        whole = cur.sample.size >= cur.count
        result = ks_samples(ref, cur) if whole else ks_binned(ref, cur)
        return _judged(base, result.statistic, result.p_value)
    if method == "wasserstein":
        return _judged(base, binned_wasserstein(ref, cur))
    if method == "psi":
        return _judged(base, psi(ref_bins, cur_bins))
    return _judged(base, jensen_shannon(ref_bins, cur_bins))


def _categorical(
    name: str,
    ref: CategoricalProfile,
    cur: CategoricalProfile,
    config: DriftConfig,
    settings: ColumnConfig,
    key: str,
) -> FeatureDrift:
    names, ref_counts, cur_counts = aligned_counts(ref, cur)
    seen = int(np.count_nonzero(ref_counts + cur_counts))
    method, threshold = config.choose(settings, "categorical", cur.count, seen, key=key)
    bins, ref_shares, cur_shares = _plotted(names, shares(ref_counts), shares(cur_counts))
    base = FeatureDrift(
        feature=name,
        kind="categorical",
        method=method,
        statistic=None,
        threshold=threshold,
        drifted=False,
        reference_rows=ref.count,
        current_rows=cur.count,
        bins=bins,
        reference_shares=ref_shares,
        current_shares=cur_shares,
    )
    short = _too_few(ref.count, cur.count, config.min_rows)
    if short:
        return replace(base, evaluable=False, note=short)
    unseen = [c for c, r, n in zip(names, ref_counts, cur_counts, strict=True) if r == 0 and n]
    if unseen:
        more = " ..." if len(unseen) > 5 else ""
        base = replace(base, note=f"unseen: {', '.join(unseen[:5])}{more}")
    if method == "chisquare":
        result = chi_square(ref_counts, cur_counts)
        return _judged(base, result.statistic, result.p_value)
    if method == "psi":
        return _judged(base, psi(ref_counts, cur_counts))
    return _judged(base, jensen_shannon(ref_counts, cur_counts))


def _judged(base: FeatureDrift, statistic: float, p_value: float | None = None) -> FeatureDrift:
    if base.method in P_VALUE_METHODS:
        assert p_value is not None
        drifted = p_value < base.threshold
    else:
        drifted = not math.isnan(statistic) and statistic >= base.threshold
    return replace(base, statistic=statistic, p_value=p_value, drifted=bool(drifted))


def _too_few(n_ref: int, n_cur: int, min_rows: int) -> str:
    if n_cur < min_rows:
        return f"{n_cur:,} values in the window, under min_rows {min_rows:,}"
    if n_ref < min_rows:
        return f"{n_ref:,} values in the baseline, under min_rows {min_rows:,}"
    return ""


def _plotted(
    names: list[str], ref: np.ndarray, cur: np.ndarray
) -> tuple[tuple[str, ...], tuple[float, ...], tuple[float, ...]]:
    """The categories to plot: the most frequent in either window, the rest as one bar."""
    order = np.argsort(-np.maximum(ref, cur), kind="stable")
    top, rest = order[:PLOTTED_CATEGORIES], order[PLOTTED_CATEGORIES:]
    bins = [names[i] for i in top]
    ref_s, cur_s = [float(ref[i]) for i in top], [float(cur[i]) for i in top]
    if rest.size:
        bins.append(f"({rest.size} more)")
        ref_s.append(float(ref[rest].sum()))
        cur_s.append(float(cur[rest].sum()))
    return tuple(bins), tuple(ref_s), tuple(cur_s)
