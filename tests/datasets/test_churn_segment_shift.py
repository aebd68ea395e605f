"""The churn generator's `segment_shift` knob: concept drift in one segment only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from relevo.datasets import CHURN_FEATURES, CHURN_TARGET, SHIFTED_SEGMENT, make_churn


def test_zero_shift_is_the_unchanged_table() -> None:
    pd.testing.assert_frame_equal(
        make_churn(2000, seed=4, segment_shift=0.0), make_churn(2000, seed=4)
    )


def test_only_the_segment_churns_differently() -> None:
    before = make_churn(40_000, seed=5)
    after = make_churn(40_000, seed=5, segment_shift=2.5)
    pd.testing.assert_frame_equal(before[CHURN_FEATURES], after[CHURN_FEATURES])
    inside = before.index.isin(before.query(SHIFTED_SEGMENT).index)
    assert 0.15 < inside.mean() < 0.25  # about a fifth of the customers
    assert before[CHURN_TARGET][~inside].equals(after[CHURN_TARGET][~inside])
    assert before[CHURN_TARGET][inside].mean() == pytest.approx(0.40, abs=0.03)
    assert after[CHURN_TARGET][inside].mean() == pytest.approx(0.83, abs=0.03)
    # the same uniform draws decide: a shift up only adds churners
    assert np.all(after[CHURN_TARGET].to_numpy() >= before[CHURN_TARGET].to_numpy())
    lower = make_churn(40_000, seed=5, segment_shift=-2.0)
    assert lower[CHURN_TARGET][inside].mean() < 0.15


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "a", True])
def test_a_bad_shift_is_refused_by_name(bad: object) -> None:
    with pytest.raises(ValueError, match="segment_shift"):
        make_churn(10, segment_shift=bad)  # type: ignore[arg-type]
