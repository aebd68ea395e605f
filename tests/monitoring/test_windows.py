"""Windows read from the store: replicas' and buckets' rows merge exactly, in any order."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pandas as pd
import pytest

from relevo.datasets import make_churn
from relevo.datasets.churn import CHURN_FEATURES
from relevo.monitoring import NumericProfile
from relevo.monitoring.buckets import BucketProfile
from relevo.monitoring.windows import load_window, volumes
from relevo.store.profiles import ProfileRow

START = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)


@pytest.fixture
def registered(rv, churn_pipeline, churn_frame):
    version = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    return version, rv.registry.reference_profile(version)


def _rows(reference, pipeline, version, *, replicas=2, minutes=4, role="champion", seed=0):
    """Bucket rows of `replicas` replicas over `minutes` one-minute buckets, and their data."""
    out, frames = [], []
    for m in range(minutes):
        for r in range(replicas):
            frame = make_churn(50 + 37 * r + 11 * m, seed=seed + 100 * m + r)[CHURN_FEATURES]
            scores = pipeline.predict_proba(frame)[:, 1]
            start = START + timedelta(minutes=m)
            bucket = BucketProfile.empty(
                reference, "churn", version.name, version.version, role, start, 60, seed=r
            ).update(frame, scores, reference)
            payload = orjson.dumps(bucket.to_dict()).decode()
            out.append(
                ProfileRow(
                    "churn", version.name, version.version, role, bucket.start, 60,
                    f"replica-{r}", bucket.rows, payload,
                )
            )  # fmt: skip
            frames.append(frame.assign(_score=scores))
    return out, pd.concat(frames, ignore_index=True)


def test_a_window_is_the_exact_merge_of_every_replica_and_bucket(rv, registered, churn_pipeline):
    version, reference = registered
    rows, data = _rows(reference, churn_pipeline, version)
    shuffled = list(rows)
    random.Random(1).shuffle(shuffled)
    rv.store.profiles.upsert(shuffled)
    window = load_window(rv.store, "churn", START, START + timedelta(hours=1))
    assert window is not None
    assert (window.model_name, window.model_version) == (version.name, version.version)
    assert window.rows == len(data) and window.buckets == len(rows)
    for name in ("age", "monthly_charges", "satisfaction"):
        col = window.inputs.columns[name]
        assert isinstance(col, NumericProfile)
        values = data[name].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        inner = np.searchsorted(col.edges[1:-1], finite, side="right")
        assert col.counts.tolist() == np.bincount(inner, minlength=col.n_bins).tolist()
        assert col.mean == pytest.approx(finite.mean(), rel=1e-12)
        assert col.variance == pytest.approx(finite.var(ddof=1), rel=1e-9)
        assert (col.min, col.max) == (finite.min(), finite.max())
        assert set(col.sample.tolist()) <= set(finite.tolist())
        # drawn in proportion to the buckets' rows: up to 32 x rows / the largest bucket's
        biggest = max(r.rows for r in rows)
        assert 0.8 * 32 * len(data) / biggest <= col.sample.size <= 32 * len(data) / biggest
    contract = window.inputs.columns["contract"]
    assert contract.counts == data.contract.value_counts().to_dict()
    pred = window.prediction.columns["prediction"]
    assert pred.mean == pytest.approx(data._score.mean(), rel=1e-12)
    assert window.multivariate is not None
    expected_errors = reference.multivariate.errors(data)
    assert window.multivariate.mean == pytest.approx(expected_errors.mean(), rel=1e-9)

    # written in another order, read again: the same window
    rv.store.profiles.upsert(list(reversed(rows)))
    again = load_window(rv.store, "churn", START, START + timedelta(hours=1))
    assert again == window


def test_windows_cut_by_time_model_and_role(rv, registered, churn_pipeline):
    version, reference = registered
    rows, _ = _rows(reference, churn_pipeline, version, replicas=1, minutes=3)
    shadow, _ = _rows(reference, churn_pipeline, version, replicas=1, minutes=1, role="shadow")
    rv.store.profiles.upsert(rows + shadow)
    first_two = load_window(rv.store, "churn", START, START + timedelta(minutes=2))
    assert first_two is not None
    assert first_two.rows == sum(r.rows for r in rows[:2]) + shadow[0].rows
    only = load_window(rv.store, "churn", START, START + timedelta(minutes=2), role="champion")
    assert only is not None and only.rows == sum(r.rows for r in rows[:2])
    assert load_window(rv.store, "churn", START - timedelta(hours=1), START) is None
    assert load_window(rv.store, "other", START, START + timedelta(hours=1)) is None
    assert (
        load_window(rv.store, "churn", START, START + timedelta(hours=1), model=("churn", 9))
        is None
    )


def test_volumes_count_answered_rows_per_bucket_and_replica(rv, registered, churn_pipeline):
    version, reference = registered
    rows, _ = _rows(reference, churn_pipeline, version, replicas=2, minutes=2)
    shadow, _ = _rows(reference, churn_pipeline, version, replicas=1, minutes=1, role="shadow")
    rv.store.profiles.upsert(rows + shadow)
    got = volumes(rv.store, "churn", START, START + timedelta(hours=1))
    expected = sorted((r.start, r.replica, r.rows) for r in rows)
    assert got == expected
    assert volumes(
        rv.store, "churn", START + timedelta(minutes=1), START + timedelta(minutes=2)
    ) == [e for e in expected if e[0] == START + timedelta(minutes=1)]
