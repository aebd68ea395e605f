"""Bucket profiles on a model's reference bins: checked against numpy/pandas on the same rows,
merged in any order, round-tripped through their compact JSON form."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.decomposition import PCA

from relevo.datasets import make_churn
from relevo.datasets.churn import CHURN_CATEGORICAL, CHURN_FEATURES, CHURN_NUMERIC
from relevo.monitoring import OTHER_CATEGORY, CategoricalProfile, NumericProfile
from relevo.monitoring.buckets import BucketProfile
from relevo.monitoring.multivariate import Reconstruction
from relevo.monitoring.quality import QualityProfile, Unseen
from relevo.monitoring.windows import merge_buckets
from relevo.registry.signature import Signature

START = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def reference(churn_pipeline, churn_frame):
    from relevo.monitoring.reference import ReferenceProfile
    from relevo.registry.flavors.base import RawOutput

    signature = Signature.infer(churn_frame, CHURN_FEATURES)
    raw = RawOutput(probabilities=churn_pipeline.predict_proba(churn_frame[CHURN_FEATURES]))
    return ReferenceProfile.build(churn_frame[CHURN_FEATURES], signature, "binary", [0, 1], raw)


def _current(seed: int, n: int) -> pd.DataFrame:
    frame = make_churn(n, seed=seed)[CHURN_FEATURES].copy()
    frame.loc[frame.index[::7], "monthly_charges"] = np.nan
    frame.loc[frame.index[::11], "contract"] = "lifetime"
    zones = [f"zone-{i % 40}" for i in range(len(frame.index[::13]))]  # under the sketch size
    frame.loc[frame.index[::13], "region"] = zones
    return frame


def _bucket(reference, frame, scores, seed=0) -> BucketProfile:
    empty = BucketProfile.empty(reference, "churn", "churn", 1, "champion", START, 60, seed)
    return empty.update(frame, scores, reference)


def test_profiles_equal_numpy_and_pandas_on_the_same_rows(reference, churn_pipeline):
    frame = _current(5, 1500)
    scores = churn_pipeline.predict_proba(frame)[:, 1]
    bucket = _bucket(reference, frame, scores)
    assert bucket.rows == 1500
    for name in CHURN_NUMERIC:
        col = bucket.inputs.columns[name]
        ref = reference.inputs.columns[name]
        assert isinstance(col, NumericProfile) and isinstance(ref, NumericProfile)
        values = frame[name].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        assert np.array_equal(col.edges, ref.edges)
        inner = np.searchsorted(ref.edges[1:-1], finite, side="right")
        assert col.counts.tolist() == np.bincount(inner, minlength=ref.n_bins).tolist()
        assert (col.count, col.missing) == (finite.size, values.size - finite.size)
        assert col.below == int((finite < ref.edges[0]).sum())
        assert col.above == int((finite > ref.edges[-1]).sum())
        assert col.mean == pytest.approx(finite.mean(), rel=1e-12)
        assert col.variance == pytest.approx(finite.var(ddof=1), rel=1e-9)
        assert set(col.sample.tolist()) <= set(finite.tolist())
        assert col.sample.size == min(32, finite.size)
    for name in CHURN_CATEGORICAL:
        col = bucket.inputs.columns[name]
        ref = reference.inputs.columns[name]
        assert isinstance(col, CategoricalProfile) and isinstance(ref, CategoricalProfile)
        seen = set(ref.counts)
        values = frame[name].map(str)
        expected = values.where(values.isin(seen), OTHER_CATEGORY).value_counts().to_dict()
        assert col.counts == expected
        unseen = values[~values.isin(seen)].value_counts()
        if unseen.empty:
            assert name not in bucket.quality.unseen
        else:
            u = bucket.quality.unseen[name]
            assert u.total == int(unseen.sum())
            assert u.distinct == unseen.size  # under the sketch's size: exact
    assert bucket.quality.unseen["contract"].top == {
        "lifetime": int((frame.contract == "lifetime").sum())
    }
    pred = bucket.prediction.columns["prediction"]
    assert isinstance(pred, NumericProfile)
    assert pred.mean == pytest.approx(scores.mean(), rel=1e-12)
    assert pred.count == scores.size


def test_the_reconstruction_error_is_a_pca_reconstruction(reference, churn_frame):
    mv = reference.multivariate
    assert isinstance(mv, Reconstruction)
    frame = _current(6, 400)
    # independent: scikit-learn's PCA on the same standardised design, same components kept
    design = pd.DataFrame({c: frame[c].astype(float) for c in mv.numeric})
    for col, cats in mv.categorical:
        for cat in cats:
            design[f"{col}={cat}"] = (frame[col].astype(str) == cat).astype(float)
    z = (design.to_numpy() - mv.mean) / mv.scale
    z[~np.isfinite(z)] = 0.0
    pca = PCA(n_components=mv.components.shape[0])
    pca.components_ = mv.components
    pca.mean_ = np.zeros(z.shape[1])
    rebuilt = pca.inverse_transform(pca.transform(z))
    expected = np.linalg.norm(z - rebuilt, axis=1)
    assert np.allclose(mv.errors(frame), expected, rtol=1e-9, atol=1e-12)
    assert 0.65 <= mv.explained < 1.0
    # the reference's own error profile is the errors of the reference rows
    own = mv.errors(churn_frame[CHURN_FEATURES])
    assert mv.errors_profile.count == own.size
    assert mv.errors_profile.mean == pytest.approx(own.mean(), rel=1e-9)
    bucket = _bucket(reference, frame, np.zeros(len(frame)))
    assert bucket.multivariate is not None
    assert bucket.multivariate.mean == pytest.approx(expected.mean(), rel=1e-9)


def test_the_reconstruction_error_of_column_arrays_is_the_frames(reference):
    # the production profiles hand over float arrays and object arrays, not a DataFrame
    mv = reference.multivariate
    frame = _current(7, 300)
    frame.loc[frame.index[::5], "contract"] = None
    columns = {c: frame[c].to_numpy(dtype=np.float64) for c in CHURN_NUMERIC}
    for c in CHURN_CATEGORICAL:
        values = np.empty(len(frame), dtype=object)
        values[:] = frame[c].tolist()
        columns[c] = values
    assert np.array_equal(mv.errors(columns), mv.errors(frame))
    # a numeric column missing from the rows: imputed with the reference mean either way
    gone = mv.numeric[0]
    partial = {c: v for c, v in columns.items() if c != gone}
    assert np.array_equal(mv.errors(partial), mv.errors(frame.drop(columns=gone)))


def test_a_broken_correlation_raises_the_reconstruction_error(reference):
    frame = make_churn(2000, seed=8)[CHURN_FEATURES]
    shuffled = frame.copy()
    rng = np.random.default_rng(0)
    for c in CHURN_NUMERIC:  # every marginal kept, every relation broken
        shuffled[c] = rng.permutation(shuffled[c].to_numpy())
    mv = reference.multivariate
    assert mv.errors(shuffled).mean() > 1.1 * mv.errors(frame).mean()


def test_merging_buckets_in_any_order_gives_the_same_profile(reference, churn_pipeline):
    parts = [_current(seed, n) for seed, n in [(1, 300), (2, 10), (3, 500), (4, 1)]]
    buckets = [
        _bucket(reference, p, churn_pipeline.predict_proba(p)[:, 1], seed=i)
        for i, p in enumerate(parts)
    ]
    merged = [merge_buckets(list(order)) for order in itertools.permutations(buckets)]
    assert all(m == merged[0] for m in merged)
    pairwise = buckets[0].merge(buckets[1]).merge(buckets[2]).merge(buckets[3])
    everything = pd.concat(parts, ignore_index=True)
    for m in (merged[0], pairwise):
        assert m.rows == len(everything)
        age = m.inputs.columns["age"]
        assert isinstance(age, NumericProfile)
        assert age.mean == pytest.approx(everything.age.mean(), rel=1e-12)
        assert age.variance == pytest.approx(everything.age.var(), rel=1e-9)
        assert age.sample.size == 32
        assert set(age.sample.tolist()) <= set(everything.age.tolist())
        assert m.quality.unseen["contract"].total == int((everything.contract == "lifetime").sum())
    assert merged[0].inputs.columns["contract"] == pairwise.inputs.columns["contract"]


def test_to_dict_round_trips_and_stays_small(reference, churn_pipeline):
    frame = _current(7, 2000)
    bucket = _bucket(reference, frame, churn_pipeline.predict_proba(frame)[:, 1], seed=3)
    bucket = bucket.with_quality(QualityProfile(rejected=3, reasons={"null": 2}, failed=1))
    data = bucket.to_dict()
    text = orjson.dumps(data)
    assert BucketProfile.from_dict(orjson.loads(text), reference) == bucket
    assert len(text) < 8_000  # 9 columns, a prediction and an error, whatever the rows


def test_unseen_categories_top_k_and_distinct_count_merge():
    rng = random.Random(0)
    names = [f"postcode-{i}" for i in range(5000)]
    batches = [
        {n: rng.randint(1, 3) for n in rng.sample(names, 800)} | {"hot": 500} for _ in range(6)
    ]
    merged = Unseen.of(batches[0])
    for b in batches[1:]:
        merged = merged.merge(Unseen.of(b))
    truth: dict[str, int] = {}
    for b in batches:
        for n, c in b.items():
            truth[n] = truth.get(n, 0) + c
    assert merged.total == sum(truth.values())
    assert next(iter(merged.top)) == "hot"
    # Misra-Gries: never over, under by at most total / (k + 1)
    slack = merged.total / (merged.k + 1)
    for n, c in merged.top.items():
        assert truth[n] - slack <= c <= truth[n]
    assert merged.distinct == pytest.approx(len(truth), rel=0.3)  # KMV with 64 hashes
    again = Unseen.of(batches[3])
    for b in [*batches[:3], *batches[4:]]:
        again = again.merge(Unseen.of(b))
    assert again.hashes == merged.hashes
    assert Unseen.from_dict(orjson.loads(orjson.dumps(merged.to_dict()))) == merged
