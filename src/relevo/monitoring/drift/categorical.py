"""Drift statistics of one categorical column, from two `CategoricalProfile`s.

* `aligned_counts`: both profiles' counts over the same categories (the reference's, then the
  current's unseen ones; when the reference folded its rarest categories into "__other__",
  categories it does not name count there, since they may be among the folded ones).
* `chi_square`: Pearson's chi-square test of homogeneity on the 2 x k table of counts (the
  reference is a sample too, so homogeneity rather than goodness of fit to fixed shares);
  equals `scipy.stats.chi2_contingency(table, correction=False)` up to float rounding.
* PSI and Jensen-Shannon come from `relevo.monitoring.drift.distances` on the aligned counts.
"""

from __future__ import annotations

import numpy as np

from relevo.monitoring.drift.numeric import Tested
from relevo.monitoring.profile import OTHER_CATEGORY, CategoricalProfile


def aligned_counts(
    reference: CategoricalProfile, current: CategoricalProfile
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(categories, reference counts, current counts) over one list of categories."""
    names = list(reference.counts)
    if OTHER_CATEGORY in reference.counts:
        ref_counts = np.array([reference.counts[c] for c in names], dtype=np.float64)
        cur = dict.fromkeys(names, 0)
        for c, n in current.counts.items():
            cur[c if c in cur else OTHER_CATEGORY] += n
        return names, ref_counts, np.array([cur[c] for c in names], dtype=np.float64)
    names += [c for c in current.counts if c not in reference.counts]
    ref_counts = np.array([reference.counts.get(c, 0) for c in names], dtype=np.float64)
    cur_counts = np.array([current.counts.get(c, 0) for c in names], dtype=np.float64)
    return names, ref_counts, cur_counts


def chi_square(reference: np.ndarray, current: np.ndarray) -> Tested:
    """Chi-square test of homogeneity of two count vectors over the same categories."""
    from scipy.special import chdtrc  # the chi-square survival function, imported when needed

    table = np.vstack([reference, current]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]  # a category neither saw carries no information
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return Tested(0.0, 1.0)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return Tested(statistic, float(chdtrc(table.shape[1] - 1, statistic)))
