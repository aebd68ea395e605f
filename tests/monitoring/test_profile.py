"""Mergeable profiles, checked against independent computations (numpy, pandas, scipy)."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from functools import reduce

import numpy as np
import orjson
import pandas as pd
import pytest
from scipy import stats

from relevo.monitoring import (
    OTHER_CATEGORY,
    CategoricalProfile,
    DatasetProfile,
    NumericProfile,
)
from relevo.monitoring.numeric import reference_edges
from relevo.monitoring.profile import COUNT_BLOCK


def explicit_bins(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Per-value bin counting straight from the definition (-inf, e1), [e1, e2), ...,
    [e_last-1, +inf): a value's bin is the number of inner edges it is >= to."""
    inner = list(edges[1:-1])
    counts = [0] * max(len(edges) - 1, 1)
    for v in values:
        counts[sum(1 for e in inner if v >= e)] += 1
    return np.array(counts)


def assert_same_stats(profile: NumericProfile, values: np.ndarray) -> None:
    """Counts exact, moments equal to numpy's on the finite values."""
    finite = values[np.isfinite(values)]
    assert profile.count == finite.size
    assert profile.missing == values.size - finite.size
    edges = profile.edges
    hist, _ = np.histogram(np.clip(finite, edges[0], edges[-1]), bins=edges)
    np.testing.assert_array_equal(profile.counts, hist)
    assert profile.below == np.count_nonzero(finite < edges[0])
    assert profile.above == np.count_nonzero(finite > edges[-1])
    assert profile.mean == pytest.approx(finite.mean(), rel=1e-10, abs=1e-12)
    assert profile.variance == pytest.approx(finite.var(ddof=1), rel=1e-9)
    assert profile.std == pytest.approx(finite.std(ddof=1), rel=1e-9)
    assert profile.min == finite.min()
    assert profile.max == finite.max()


@pytest.fixture(scope="module")
def ref_values() -> np.ndarray:
    return np.random.default_rng(1).normal(10.0, 2.0, size=20_000)


# ---------------------------------------------------------------------------- numeric bins


def test_reference_edges_are_deduplicated_quantiles_from_min_to_max(ref_values: np.ndarray):
    p = NumericProfile.reference(ref_values, bins=10)
    expected = np.unique(np.quantile(ref_values, np.linspace(0, 1, 11)))
    np.testing.assert_allclose(p.edges, expected, rtol=1e-12)
    assert p.edges.size == 11 and p.n_bins == 10
    assert p.edges[0] == ref_values.min() and p.edges[-1] == ref_values.max()
    # quantile bins hold ~10 % of the reference each, and nothing is out of range
    np.testing.assert_allclose(p.proportions, 0.1, atol=1e-3)
    assert p.below == p.above == 0
    assert_same_stats(p, ref_values)


@pytest.mark.parametrize("kind", ["continuous", "few distinct", "constant"])
def test_reference_edges_in_place_are_the_same_edges(kind: str) -> None:
    """`overwrite=True` (the drift call's edge sample, not used again) may reorder the values
    but gives exactly the edges of the default, which leaves its input as it was."""
    rng = np.random.default_rng(5)
    values = {
        "continuous": rng.lognormal(3, 0.5, 50_000),
        "few distinct": rng.poisson(1, 50_000).astype(float),  # ties: one bin per value
        "constant": np.full(1000, 7.5),
    }[kind]
    before = values.copy()
    edges = reference_edges(values, 10)
    np.testing.assert_array_equal(values, before)
    in_place = reference_edges(values, 10, overwrite=True)
    np.testing.assert_array_equal(in_place, edges)
    np.testing.assert_array_equal(np.sort(values), np.sort(before))
    if kind == "few distinct":
        assert edges.size == np.unique(before).size + 1  # the distinct values' branch


def test_production_counts_match_histogram_including_out_of_range(ref_values: np.ndarray):
    ref = NumericProfile.reference(ref_values, bins=10)
    prod = np.random.default_rng(2).normal(13.0, 3.0, size=5_000)  # drifted, wider
    p = ref.empty_like().update(prod)
    assert p.below > 0 and p.above > 0  # both tails beyond the reference range
    assert_same_stats(p, prod)
    np.testing.assert_array_equal(p.counts, explicit_bins(prod, ref.edges))
    np.testing.assert_allclose(p.proportions, p.counts / prod.size)
    assert p.edges is not ref.edges and np.array_equal(p.edges, ref.edges)


def test_boundary_values_follow_the_bin_definition():
    ref = NumericProfile(edges=np.array([0.0, 2, 4, 6, 8, 10]), counts=np.zeros(5))
    values = np.array([-1.0, 0.0, 1.999, 2.0, 8.0, 10.0, 10.5, 1e9])
    p = ref.empty_like().update(values)
    np.testing.assert_array_equal(p.counts, [3, 1, 0, 0, 4])
    np.testing.assert_array_equal(p.counts, explicit_bins(values, ref.edges))
    assert (p.below, p.above) == (1, 2)


def test_low_cardinality_column_gets_one_bin_per_value():
    flags = np.array([0] * 90 + [1] * 10)
    p = NumericProfile.reference(flags)
    np.testing.assert_array_equal(p.edges, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(p.counts, [90, 10])
    shifted = p.empty_like().update(np.array([1] * 70 + [0] * 30))
    np.testing.assert_array_equal(shifted.counts, [30, 70])
    ratings = np.random.default_rng(3).integers(1, 6, size=1_000)
    r = NumericProfile.reference(ratings)
    assert r.n_bins == 5
    np.testing.assert_array_equal(r.counts, np.bincount(ratings)[1:])


def test_constant_column_has_one_bin_and_counts_outliers():
    p = NumericProfile.reference(np.full(100, 3.0))
    np.testing.assert_array_equal(p.edges, [3.0])
    np.testing.assert_array_equal(p.counts, [100])
    assert (p.mean, p.variance, p.min, p.max) == (3.0, 0.0, 3.0, 3.0)
    q = p.empty_like().update([2.0, 3.0, 3.0, 4.0, 5.0])
    np.testing.assert_array_equal(q.counts, [5])
    assert (q.below, q.above) == (1, 2)


def test_all_missing_column():
    p = NumericProfile.reference(pd.Series([None, np.nan, None], dtype=object))
    assert p.edges.size == 0 and p.n_bins == 1
    assert (p.count, p.missing, p.missing_share) == (0, 3, 1.0)
    assert math.isnan(p.mean) and math.isnan(p.variance) and math.isnan(p.min)
    assert np.isnan(p.proportions).all()
    assert p.sample.size == 0
    q = p.update([1.0, 2.0, np.nan])
    np.testing.assert_array_equal(q.counts, [2])
    assert (q.below, q.above, q.count, q.missing) == (0, 0, 2, 4)
    assert q.mean == 1.5 and q.min == 1.0 and q.max == 2.0


def test_missing_values_in_every_spelling():
    ref = NumericProfile.reference(np.arange(100.0))
    cases = [
        [1.0, None, 3.0, float("nan")],
        np.array([1.0, np.nan, 3.0, np.nan]),
        pd.Series([1, None, 3, None], dtype="Int64"),
        pd.Series([1.0, pd.NA, 3.0, None], dtype="Float64"),
        pd.Series([1, pd.NA, 3, None], dtype=object),
        [1.0, math.inf, 3.0, -math.inf],  # non-finite counts as missing, not in the moments
    ]
    for values in cases:
        p = ref.empty_like().update(values)
        assert (p.count, p.missing, p.mean, p.min, p.max) == (2, 2, 2.0, 1.0, 3.0), values
        assert p.missing_share == 0.5
    with pytest.raises(ValueError, match="not numeric"):
        ref.update(["1.0", "abc"])
    with pytest.raises(ValueError, match="one-dimensional"):
        ref.update(np.zeros((2, 2)))


def test_empty_updates_change_nothing(ref_values: np.ndarray):
    p = NumericProfile.reference(ref_values)
    for empty in ([], np.array([]), pd.Series([], dtype=float)):
        assert p.update(empty) == p
    empty_profile = p.empty_like()
    assert empty_profile.merge(p) == p
    assert p.merge(empty_profile) == p
    assert empty_profile.update([]) == empty_profile
    assert empty_profile.count == 0 and empty_profile.counts.sum() == 0


def test_update_returns_new_profile_and_leaves_self_alone(ref_values: np.ndarray):
    p = NumericProfile.reference(ref_values[:1000])
    before = NumericProfile.from_dict(p.to_dict())
    q = p.update(ref_values[1000:2000])
    r = p.merge(q)
    assert p == before and q is not p and r is not p
    assert q.count == 2000 and r.count == 3000
    with pytest.raises(ValueError):
        p.counts[0] = 1  # arrays are read-only


# ---------------------------------------------------------------------------- moments, merges


def test_chunked_updates_equal_numpy_on_concatenation(ref_values: np.ndarray):
    rng = np.random.default_rng(4)
    data = rng.normal(50, 10, size=30_000) + 1e6  # large offset: catastrophic if naive
    data[rng.random(data.size) < 0.05] = np.nan
    p = NumericProfile.reference(ref_values).empty_like()
    for chunk in np.split(data, [0, 1, 17, 5000, 5000, 12_345, 29_999]):
        p = p.update(chunk)
    assert_same_stats(p, data)


def test_merge_in_any_order_equals_profile_of_concatenated_data(ref_values: np.ndarray):
    rng = np.random.default_rng(5)
    parts = [
        rng.normal(8, 1, 3_000),
        rng.exponential(5, 10),
        rng.normal(12, 4, 7_000),
        np.array([np.nan, 1e3, -1e3]),
    ]
    empty = NumericProfile.reference(ref_values).empty_like()
    profiles = [empty.update(x) for x in parts]
    whole = np.concatenate(parts)
    direct = empty.update(whole)
    for order in itertools.permutations(profiles):
        merged = reduce(NumericProfile.merge, order)
        assert_same_stats(merged, whole)
        np.testing.assert_array_equal(merged.counts, direct.counts)
    tree = profiles[0].merge(profiles[1]).merge(profiles[2].merge(profiles[3]))
    assert_same_stats(tree, whole)


def test_merge_requires_same_edges(ref_values: np.ndarray):
    a = NumericProfile.reference(ref_values)
    b = NumericProfile.reference(ref_values + 1)
    with pytest.raises(ValueError, match="edges"):
        a.merge(b)
    with pytest.raises(ValueError, match="edges"):
        NumericProfile.reference(ref_values, bins=5).merge(a)
    with pytest.raises(TypeError):
        a.merge(CategoricalProfile.reference(["x"]))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- reservoir sample


def test_sample_is_bounded_subset_and_deterministic(ref_values: np.ndarray):
    p = NumericProfile.reference(ref_values, sample_size=300, seed=7)
    assert p.sample.size == 300
    assert np.isin(p.sample, ref_values).all()
    assert np.unique(p.sample).size == 300  # drawn without replacement
    np.testing.assert_array_equal(
        p.sample, NumericProfile.reference(ref_values, sample_size=300, seed=7).sample
    )
    assert not np.array_equal(
        p.sample, NumericProfile.reference(ref_values, sample_size=300, seed=8).sample
    )
    small = NumericProfile.reference([3.0, np.nan, 1.0], sample_size=300)
    np.testing.assert_array_equal(np.sort(small.sample), [1.0, 3.0])
    grown = p.update(ref_values + 100)
    assert grown.sample.size == 300
    assert np.isin(grown.sample, np.concatenate([ref_values, ref_values + 100])).all()


def test_sample_of_chunked_stream_is_uniform():
    values = np.arange(20_000.0)
    p = NumericProfile.reference(values[:10], sample_size=800, seed=3)
    for chunk in np.array_split(values[10:], 37):
        p = p.update(chunk)
    assert p.sample.size == 800 and np.unique(p.sample).size == 800
    assert stats.kstest(p.sample / values.size, "uniform").pvalue > 1e-3


def test_merged_sample_is_weighted_by_counts():
    big, small = np.arange(900.0), np.arange(900.0, 1000.0)
    ref = NumericProfile.reference(np.arange(1000.0), sample_size=100)
    shares = []
    for seed in range(200):
        a = ref.empty_like(seed=seed).update(big)
        b = ref.empty_like(seed=10_000 + seed).update(small)
        merged = a.merge(b) if seed % 2 else b.merge(a)
        assert merged.sample.size == 100 and np.unique(merged.sample).size == 100
        shares.append(np.mean(merged.sample < 900))
    assert np.mean(shares) == pytest.approx(0.9, abs=0.01)
    # a sequential stream (big part first) gives the same weighting
    streamed = [
        np.mean(ref.empty_like(seed=s).update(big).update(small).sample < 900) for s in range(200)
    ]
    assert np.mean(streamed) == pytest.approx(0.9, abs=0.01)


def test_merged_sample_gives_every_value_the_same_inclusion_probability():
    ref = NumericProfile.reference(np.arange(20.0), sample_size=4)
    hits = np.zeros(20)
    trials = 3_000
    for seed in range(trials):
        a = ref.empty_like(seed=seed).update(np.arange(15.0))
        b = ref.empty_like(seed=seed + trials).update(np.arange(15.0, 20.0))
        hits[a.merge(b).sample.astype(int)] += 1
    # each value should be in the sample with probability 4 / 20
    np.testing.assert_allclose(hits / trials, 0.2, atol=0.035)
    assert stats.chisquare(hits).pvalue > 1e-3


def test_merge_with_smaller_sample_size_keeps_the_smaller(ref_values: np.ndarray):
    a = NumericProfile.reference(ref_values[:5000], sample_size=500)
    b = a.empty_like().update(ref_values[5000:])
    b = NumericProfile.from_dict({**b.to_dict(), "sample_size": 50, "sample": b.sample[:50]})
    merged = a.merge(b)
    assert merged.sample_size == 50 and merged.sample.size == 50
    assert np.isin(merged.sample, ref_values).all()


# ---------------------------------------------------------------------------- categorical


def test_categorical_counts_equal_value_counts():
    rng = np.random.default_rng(6)
    values = pd.Series(
        rng.choice(["red", "green", "blue", None], size=5_000, p=[0.5, 0.3, 0.15, 0.05]),
        dtype=object,
    )
    p = CategoricalProfile.reference(values)
    assert p.counts == values.value_counts().to_dict()
    assert p.missing == values.isna().sum() and p.count == values.notna().sum()
    assert p.missing_share == pytest.approx(values.isna().mean())
    assert p.categories == ["red", "green", "blue"]  # most frequent first
    np.testing.assert_allclose(
        p.proportions(["blue", "red", "purple"]),
        values.value_counts(normalize=True).reindex(["blue", "red", "purple"], fill_value=0),
    )


@pytest.mark.parametrize("dtype", ["object", "str", "category"])
def test_categorical_columns_longer_than_a_block_count_every_value(dtype: str):
    """Long columns are counted block by block: the counts of every value, whatever the dtype."""
    rng = np.random.default_rng(7)
    n = 2 * COUNT_BLOCK + 333
    raw = rng.choice(np.array(["a", "b", "c", "d"], dtype=object), size=n, p=[0.4, 0.3, 0.2, 0.1])
    raw[rng.random(n) < 0.02] = None
    raw[COUNT_BLOCK:] = np.where(raw[COUNT_BLOCK:] == "d", "e", raw[COUNT_BLOCK:])  # later blocks
    p = CategoricalProfile.reference(pd.Series(raw, dtype=dtype))
    expected = Counter(v for v in raw if v is not None)
    assert p.counts == dict(expected) and p.missing == sum(v is None for v in raw)


def test_categorical_booleans_and_missing():
    values = pd.Series([True, False, True, None, pd.NA], dtype="boolean")
    p = CategoricalProfile.reference(values)
    assert p.counts == {"True": 2, "False": 1} and p.missing == 2
    q = p.update([True, None, np.nan, False, "True"])
    assert q.counts == {"True": 4, "False": 2} and q.missing == 4
    assert p.update([]) == p and p.empty_like().count == 0
    assert np.isnan(p.empty_like().proportions(["True"])).all()


def test_categorical_merge_in_any_order_equals_counts_of_concatenation():
    rng = np.random.default_rng(7)
    parts = [pd.Series(rng.choice(list("abcdef"), size=n)) for n in (10, 3_000, 500)]
    parts.append(pd.Series(["g", None, "a"]))
    empty = CategoricalProfile()
    profiles = [empty.update(x) for x in parts]
    whole = pd.concat(parts)
    for order in itertools.permutations(profiles):
        merged = reduce(CategoricalProfile.merge, order)
        assert merged.counts == whole.value_counts().to_dict()
        assert merged.missing == 1
    with pytest.raises(TypeError):
        empty.merge(NumericProfile.reference([1.0]))  # type: ignore[arg-type]


def test_rare_categories_fold_into_other():
    values = pd.Series(["a"] * 50 + ["b"] * 30 + ["c"] * 10 + ["d"] * 6 + ["e"] * 4)
    p = CategoricalProfile.reference(values, max_categories=3)
    assert p.counts == {"a": 50, "b": 30, "c": 10, OTHER_CATEGORY: 10}
    assert p.count == 100
    # unlisted production categories count toward "__other__" when it is listed
    q = p.empty_like().update(["a", "zzz", "d", "b"])
    assert q.counts == {"a": 1, "b": 1, "d": 1, OTHER_CATEGORY: 1}  # ties: by name
    np.testing.assert_allclose(q.proportions(p.categories), [0.25, 0.25, 0, 0.5])
    np.testing.assert_allclose(q.proportions(["a", "b"]), [0.25, 0.25])  # rest left out
    # merging folds again, and "__other__" keeps its mass
    merged = p.merge(q)
    assert merged.counts == {"a": 51, "b": 31, "c": 10, OTHER_CATEGORY: 12}
    assert sum(merged.counts.values()) == 104


# ---------------------------------------------------------------------------- dataset


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(8)
    n = 4_000
    return pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "income": np.where(rng.random(n) < 0.1, np.nan, rng.lognormal(10, 1, n)),
            "constant": np.ones(n),
            "empty": np.full(n, np.nan),
            "member": rng.random(n) < 0.3,
            "city": pd.Series(rng.choice(["paris", "rome", "oslo", None], n), dtype=object),
            "ignored": rng.random(n),
        }
    )


KINDS = {
    "age": "integer",
    "income": "number",
    "constant": "number",
    "empty": "number",
    "member": "boolean",
    "city": "string",
}


def test_dataset_reference_profiles_each_column(frame: pd.DataFrame):
    p = DatasetProfile.reference(frame, KINDS, bins=8, sample_size=200, seed=1)
    assert p.n_rows == len(frame) and set(p.columns) == set(KINDS)
    income = p.columns["income"]
    assert isinstance(income, NumericProfile) and income.n_bins == 8
    assert_same_stats(income, frame["income"].to_numpy())
    assert_same_stats(p.columns["age"], frame["age"].to_numpy(dtype=float))
    assert p.columns["constant"].n_bins == 1
    assert p.columns["empty"].missing == len(frame)
    city = p.columns["city"]
    assert isinstance(city, CategoricalProfile)
    assert city.counts == frame["city"].value_counts().to_dict()
    member = p.columns["member"]
    assert member.counts == {str(k): v for k, v in frame["member"].value_counts().items()}


def test_dataset_windows_across_replicas_merge_to_one_window(frame: pd.DataFrame):
    ref = DatasetProfile.reference(frame, KINDS)
    prod = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    replicas = [ref.empty_like(seed=i) for i in range(3)]
    for i, chunk in enumerate(np.array_split(np.arange(len(prod)), 9)):
        replicas[i % 3] = replicas[i % 3].update(prod.iloc[chunk])
    merged = reduce(DatasetProfile.merge, replicas)
    single = ref.empty_like().update(prod)
    assert merged.n_rows == single.n_rows == len(prod)
    for name, col in single.columns.items():
        other = merged.columns[name]
        if isinstance(col, NumericProfile):
            np.testing.assert_array_equal(other.counts, col.counts)
            assert (other.count, other.missing, other.below, other.above) == (
                col.count,
                col.missing,
                col.below,
                col.above,
            )
            assert other.mean == pytest.approx(col.mean, nan_ok=True)
            assert other.variance == pytest.approx(col.variance, nan_ok=True)
        else:
            assert other == col


def test_dataset_update_with_absent_column_and_empty_frame(frame: pd.DataFrame):
    ref = DatasetProfile.reference(frame, KINDS)
    window = ref.empty_like().update(frame.drop(columns=["income", "city"]).head(10))
    assert window.n_rows == 10
    assert window.columns["income"].missing == 10 and window.columns["income"].count == 0
    assert window.columns["city"].missing == 10 and window.columns["city"].count == 0
    assert window.columns["age"].count == 10
    assert ref.update(frame.head(0)) == ref


def test_dataset_errors(frame: pd.DataFrame):
    with pytest.raises(ValueError, match="kinds"):
        DatasetProfile.reference(frame, {"age": "float"})
    with pytest.raises(ValueError, match="missing from the frame"):
        DatasetProfile.reference(frame, {"nope": "number"})
    with pytest.raises(ValueError, match="'city'"):
        DatasetProfile.reference(frame, {"city": "number"})
    a = DatasetProfile.reference(frame, {"age": "integer"})
    with pytest.raises(ValueError, match="different columns"):
        a.merge(DatasetProfile.reference(frame, {"income": "number"}))
    with pytest.raises(ValueError, match=r"'age'.*edges"):
        a.merge(DatasetProfile.reference(frame.head(100), {"age": "integer"}))
    with pytest.raises(ValueError, match="numeric in one profile"):
        a.merge(DatasetProfile.reference(frame.astype({"age": str}), {"age": "string"}))


def test_json_round_trip(frame: pd.DataFrame):
    p = DatasetProfile.reference(frame, KINDS, sample_size=50)
    p = p.merge(p.empty_like().update(frame.head(100)))
    d = p.to_dict()
    text = json.dumps(d, allow_nan=False)  # strict JSON: no NaN / Infinity tokens
    assert DatasetProfile.from_dict(json.loads(text)) == p
    back = DatasetProfile.from_dict(orjson.loads(orjson.dumps(d)))
    assert back == p
    assert back.merge(p).columns["age"].count == 2 * p.columns["age"].count
    # non-finite statistics survive: empty -> NaN, overflowing second moment -> inf
    huge = NumericProfile.reference([1e300, -1e300, 0.0])
    assert math.isinf(huge.m2)
    for col in (huge, p.columns["empty"], NumericProfile.reference([]), CategoricalProfile()):
        again = type(col).from_dict(orjson.loads(orjson.dumps(col.to_dict())))
        assert again == col
    with pytest.raises(ValueError):
        DatasetProfile.from_dict({**d, "version": 99})
    with pytest.raises(ValueError):
        NumericProfile.from_dict({**d["columns"]["age"], "counts": [1, 2]})
