"""Distances between two distributions given as counts over the same bins or categories.

Pure functions on count vectors: the numeric tests call them with bin counts, the categorical
tests with category counts. They equal the textbook formulas computed by NumPy / SciPy on the
same counts up to float rounding (tests/monitoring/drift/test_drift_statistics.py: 1e-12).
"""

from __future__ import annotations

import math

import numpy as np

#: the share a PSI term uses for an empty bin (Evidently's and most PSI implementations'
#: 0.0001): without it one empty bin makes the index infinite
PSI_FLOOR = 1e-4


def shares(counts: np.ndarray) -> np.ndarray:
    """Counts as proportions (all zeros stay zeros)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


def psi(reference: np.ndarray, current: np.ndarray, floor: float = PSI_FLOOR) -> float:
    """Population stability index: sum over bins of (q - p) * ln(q / p), p the reference's
    share, q the current's, each share floored at `floor`. 0 for equal distributions; the
    usual reading is < 0.1 stable, 0.1 to 0.25 moderate, > 0.25 a major shift."""
    p = np.maximum(shares(reference), floor)
    q = np.maximum(shares(current), floor)
    return float(np.sum((q - p) * np.log(q / p)))


def jensen_shannon(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance in base 2 (the square root of the divergence): 0 for equal
    distributions, 1 for distributions with no bin in common. Equals
    `scipy.spatial.distance.jensenshannon(p, q, base=2)`."""
    p, q = shares(reference), shares(current)
    m = (p + q) / 2
    divergence = 0.5 * (_kl(p, m) + _kl(q, m))
    return math.sqrt(max(divergence, 0.0))


def _kl(p: np.ndarray, m: np.ndarray) -> float:
    """Kullback-Leibler divergence in bits, 0 * log(0) = 0 (m > 0 wherever p > 0)."""
    nz = p > 0
    return float(np.sum(p[nz] * np.log2(p[nz] / m[nz])))
