"""Each drift statistic against an independent computation (SciPy, NumPy) on the same data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from relevo.monitoring import CategoricalProfile, NumericProfile
from relevo.monitoring.drift.categorical import aligned_counts, chi_square
from relevo.monitoring.drift.distances import jensen_shannon, psi
from relevo.monitoring.drift.numeric import (
    bin_counts,
    binned_wasserstein,
    ks_binned,
    ks_samples,
)

RNG = np.random.default_rng(20261130)


def numpy_psi(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    p = np.clip(p_counts / p_counts.sum(), 1e-4, None)
    q = np.clip(q_counts / q_counts.sum(), 1e-4, None)
    return float(((q - p) * np.log(q / p)).sum())


def profiles(a: np.ndarray, b: np.ndarray, bins: int = 10) -> tuple[NumericProfile, NumericProfile]:
    ref = NumericProfile.reference(a, bins=bins)
    return ref, ref.empty_like().update(b)


@pytest.mark.parametrize("shift", [0.0, 0.2, 1.5])
def test_psi_and_jensen_shannon_on_bins_equal_numpy_and_scipy(shift: float) -> None:
    a, b = RNG.normal(size=5000), RNG.normal(size=4000) + shift
    ref, cur = profiles(a, b)
    # the same bins, from the definition: below the range, the reference's bins, above it
    edges = ref.edges
    inner = np.histogram(np.clip(b, edges[0], edges[-1]), bins=edges)[0].astype(float)
    inner[0] -= np.count_nonzero(b < edges[0])
    inner[-1] -= np.count_nonzero(b > edges[-1])
    expected = np.concatenate(
        [[np.count_nonzero(b < edges[0])], inner, [np.count_nonzero(b > edges[-1])]]
    )
    assert np.array_equal(bin_counts(cur), expected)
    p, q = bin_counts(ref), bin_counts(cur)
    assert psi(p, q) == pytest.approx(numpy_psi(p, q), rel=1e-12, abs=1e-12)
    assert jensen_shannon(p, q) == pytest.approx(
        jensenshannon(p / p.sum(), q / q.sum(), base=2), rel=1e-12, abs=1e-12
    )


def test_distances_of_equal_and_disjoint_distributions() -> None:
    same = np.array([5.0, 3.0, 2.0])
    assert psi(same, same * 7) == pytest.approx(0.0, abs=1e-15)
    assert jensen_shannon(same, same * 7) == pytest.approx(0.0, abs=1e-7)
    assert jensen_shannon(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("draw", "shift"),
    [
        (lambda n: RNG.normal(size=n), 0.0),
        (lambda n: RNG.normal(size=n), 0.1),
        (lambda n: RNG.normal(size=n), 0.3),
        (lambda n: RNG.exponential(size=n), 0.1),
        (lambda n: RNG.exponential(size=n), 0.3),
        (lambda n: RNG.lognormal(size=n), 0.0),
        (lambda n: RNG.lognormal(size=n), 0.2),
    ],
)
@pytest.mark.parametrize("bins", [10, 20])
def test_binned_wasserstein_within_its_documented_tolerance(draw, shift: float, bins: int) -> None:
    """Documented: within 0.01 + 15 % of scipy's exact value on the raw values."""
    a = draw(20_000)
    b = draw(20_000) + shift * np.std(a)
    exact = stats.wasserstein_distance(a, b) / np.std(a)
    ref, cur = profiles(a, b, bins)
    assert abs(binned_wasserstein(ref, cur) - exact) <= 0.01 + 0.15 * exact


def test_binned_wasserstein_of_a_constant_reference() -> None:
    ref = NumericProfile.reference(np.full(500, 3.0))
    assert binned_wasserstein(ref, ref.empty_like().update(np.full(200, 3.0))) == 0.0
    assert math.isinf(binned_wasserstein(ref, ref.empty_like().update(np.full(200, 4.0))))


@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_ks_on_samples_is_scipys_exact_test_when_the_data_fit_the_sample(shift: float) -> None:
    a, b = RNG.normal(size=800), RNG.normal(size=300) + shift
    ref, cur = profiles(a, b)
    expected = stats.ks_2samp(a, b, method="exact")
    got = ks_samples(ref, cur)
    assert got.statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert got.p_value == pytest.approx(expected.pvalue, rel=1e-9)


@pytest.mark.parametrize("extra", [0, 40, 400])
def test_ks_on_bin_counts_is_scipys_asymptotic_test_on_values_at_the_bins(extra: int) -> None:
    """Values that sit inside the reference's bins (one point per bin, one below and one above
    its range) make the binned statistic the exact one: scipy's two-sample test on those
    values, asymptotic method."""
    bins = NumericProfile.reference(RNG.normal(size=5000), bins=10)
    e = bins.edges
    points = np.concatenate([[e[0] - 1], (e[:-1] + e[1:]) / 2, [e[-1] + 1]])
    a = np.repeat(points, RNG.integers(5, 60, size=points.size))
    b = np.repeat(points, RNG.integers(5, 60, size=points.size))
    b = np.concatenate([b, np.repeat(points[-3:], extra)])  # mass moved up
    ref, cur = bins.empty_like().update(a), bins.empty_like().update(b)
    expected = stats.ks_2samp(a, b, method="asymp")
    got = ks_binned(ref, cur)
    assert got.statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert got.p_value == pytest.approx(expected.pvalue, rel=1e-6)


def test_ks_on_bounded_samples_of_large_data_stays_close_to_the_full_test() -> None:
    """Past the sample size the test runs on uniform samples: the statistic moves by sampling
    error only (documented: a 1,000-value sample a side)."""
    a, b = RNG.normal(size=50_000), RNG.normal(size=50_000) + 0.5
    ref, cur = profiles(a, b)
    full = stats.ks_2samp(a, b).statistic
    assert ref.sample.size == cur.sample.size == 1000
    assert abs(ks_samples(ref, cur).statistic - full) < 0.08


@pytest.mark.parametrize("extra", [{}, {"new": 30}])
def test_chi_square_equals_scipys_contingency_test(extra: dict[str, int]) -> None:
    ref = CategoricalProfile({"a": 500, "b": 300, "c": 200})
    cur = CategoricalProfile({"a": 120, "b": 100, "c": 60, **extra})
    names, p, q = aligned_counts(ref, cur)
    assert names == ["a", "b", "c", *extra]
    got = chi_square(p, q)
    stat, pvalue, _, _ = stats.chi2_contingency(np.vstack([p, q]), correction=False)
    assert got.statistic == pytest.approx(stat, rel=1e-12)
    assert got.p_value == pytest.approx(pvalue, rel=1e-9)


def test_categorical_distances_on_aligned_counts_equal_scipy_and_numpy() -> None:
    ref = CategoricalProfile({"a": 500, "b": 300, "c": 200})
    cur = CategoricalProfile({"a": 100, "b": 100, "c": 100, "d": 50})
    _, p, q = aligned_counts(ref, cur)
    assert psi(p, q) == pytest.approx(numpy_psi(p, q), rel=1e-12)
    assert jensen_shannon(p, q) == pytest.approx(
        jensenshannon(p / p.sum(), q / q.sum(), base=2), rel=1e-12
    )


def test_categories_the_reference_folded_count_as_its_other_category() -> None:
    ref = CategoricalProfile.reference(["a"] * 50 + ["b"] * 30 + ["c"] * 5 + ["d"] * 2, 2)
    cur = CategoricalProfile({"a": 10, "c": 4, "z": 1})
    names, p, q = aligned_counts(ref, cur)
    assert names == ["a", "b", "__other__"]
    assert p.tolist() == [50, 30, 7] and q.tolist() == [10, 0, 5]
