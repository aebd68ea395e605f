"""Worst segments against SciPy; a planted bad segment found first, nothing found in noise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from analysis_models import KINDS, churn_reference, scores
from scipy import stats

from relevo.datasets import CHURN_FEATURES, SHIFTED_SEGMENT, make_churn
from relevo.errors import InvalidInputError
from relevo.feedback.segments import worst_segments
from relevo.monitoring import DatasetProfile

PLANTED = ("tenure_months < 6", "contract = month-to-month")


def planted_mask(frame: pd.DataFrame) -> np.ndarray:
    return frame.index.isin(frame.query(SHIFTED_SEGMENT).index)


@pytest.mark.parametrize("seed", [31, 32, 33])
def test_a_planted_segment_is_ranked_first(seed: int) -> None:
    """Month-to-month customers under six months of tenure start churning much more; the model
    learnt the old mechanism. Where does it under-predict churn? errors = labels, expected =
    probabilities: the excess is the residual y - p."""
    frame = make_churn(20_000, seed=seed, segment_shift=2.5)
    p, y = scores(frame), frame["churned"].to_numpy(dtype=float)
    found = worst_segments(frame[CHURN_FEATURES], y, reference=churn_reference(), expected=p)
    top = found[0]
    assert top.conditions == PLANTED  # three reference bins merged into "< 6"
    assert top.significant and top.q_value < 1e-6
    assert top.rows == int(planted_mask(frame).sum())
    assert np.array_equal(top.mask(frame, churn_reference()), planted_mask(frame))
    assert top.error == pytest.approx(y[planted_mask(frame)].mean())
    assert top.expected_error == pytest.approx(p[planted_mask(frame)].mean())


def test_misclassifications_point_at_the_planted_segment() -> None:
    """With 0/1 errors the worst group is where the model is now wrong: the planted segment's
    customers it scored below 0.5 (the ones above are now right more often)."""
    frame = make_churn(20_000, seed=34, segment_shift=2.5)
    p, y = scores(frame), frame["churned"].to_numpy()
    wrong = ((p >= 0.5) != y).astype(float)
    expected = np.where(p >= 0.5, 1 - p, p)
    top = worst_segments(
        frame[CHURN_FEATURES], wrong, reference=churn_reference(), expected=expected
    )[0]
    inside = top.mask(frame, churn_reference())
    planted = planted_mask(frame)
    assert top.significant and "tenure_months < 6" in top.conditions
    assert (inside & planted).sum() / inside.sum() > 0.6  # mostly planted customers
    assert (inside & planted).sum() / planted.sum() > 0.6  # most of them


@pytest.mark.parametrize("seed", [41, 42, 43])
def test_nothing_is_significant_when_the_model_is_right(seed: int) -> None:
    """Labels drawn from the model's own probabilities: no group is worse than it expects."""
    frame = make_churn(20_000, seed=seed)
    p = scores(frame)
    y = (np.random.default_rng(seed).random(p.size) < p).astype(float)
    features = frame[CHURN_FEATURES]
    residual = worst_segments(features, y, reference=churn_reference(), expected=p)
    wrong = ((p >= 0.5) != y).astype(float)
    miss = worst_segments(
        features, wrong, reference=churn_reference(), expected=np.where(p >= 0.5, 1 - p, p)
    )
    assert residual and miss  # slices were ranked, none of them significant
    assert not any(s.significant for s in residual + miss)
    assert all(s.q_value > 0.05 for s in residual + miss)


def test_nothing_is_significant_in_errors_unrelated_to_the_features() -> None:
    frame = make_churn(20_000, seed=44)
    errors = (np.random.default_rng(44).random(len(frame)) < 0.2).astype(float)
    found = worst_segments(frame[CHURN_FEATURES], errors, reference=churn_reference())
    assert found and not any(s.significant for s in found)
    assert found[0].tested > 10_000  # singles and pairs, each run of bins


def single_feature_case() -> tuple[pd.DataFrame, DatasetProfile, np.ndarray]:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"plan": rng.choice(["basic", "pro", "team"], 3000)})
    errors = (rng.random(3000) < np.where(frame["plan"] == "pro", 0.3, 0.2)).astype(float)
    return frame, DatasetProfile.reference(frame, {"plan": "string"}), errors


def test_binary_errors_use_fishers_exact_test_as_scipy_computes_it() -> None:
    frame, reference, errors = single_feature_case()
    top = worst_segments(frame, errors, reference=reference)[0]
    assert top.conditions == ("plan = pro",)
    inside = (frame["plan"] == "pro").to_numpy()
    table = [
        [errors[inside].sum(), (1 - errors[inside]).sum()],
        [errors[~inside].sum(), (1 - errors[~inside]).sum()],
    ]
    exact = stats.fisher_exact(table, alternative="greater").pvalue
    assert top.p_value == pytest.approx(exact, rel=1e-9)
    assert top.error == pytest.approx(errors[inside].mean())
    assert top.rest_error == pytest.approx(errors[~inside].mean())
    assert top.gap == pytest.approx(errors[inside].mean() - errors.mean())
    assert top.p_value <= top.q_value <= top.p_value * top.tested


def test_losses_use_welch_t_test_as_scipy_computes_it() -> None:
    frame, reference, errors = single_feature_case()
    loss = errors * np.random.default_rng(6).exponential(1.0, errors.size)
    top = worst_segments(frame, loss, reference=reference)[0]
    inside = (frame["plan"] == "pro").to_numpy()
    expected = stats.ttest_ind(loss[inside], loss[~inside], equal_var=False, alternative="greater")
    assert top.conditions == ("plan = pro",)
    assert top.p_value == pytest.approx(expected.pvalue, rel=1e-6)
    # Benjamini-Hochberg over the three slices tested (one per plan), as SciPy adjusts them
    plans = ["basic", "pro", "team"]
    p_values = [
        stats.ttest_ind(
            loss[(frame["plan"] == plan).to_numpy()],
            loss[(frame["plan"] != plan).to_numpy()],
            equal_var=False,
            alternative="greater",
        ).pvalue
        for plan in plans
    ]
    assert top.tested == 3
    q_values = stats.false_discovery_control(p_values, method="bh")
    assert top.q_value == pytest.approx(q_values[plans.index("pro")], rel=1e-6)


def test_adjacent_numeric_bins_merge_into_one_condition() -> None:
    frame = make_churn(20_000, seed=45)
    rng = np.random.default_rng(45)
    errors = (rng.random(len(frame)) < np.where(frame["tenure_months"] < 6, 0.35, 0.2)).astype(
        float
    )
    top = worst_segments(frame[CHURN_FEATURES], errors, reference=churn_reference())[0]
    assert top.conditions == ("tenure_months < 6",)
    assert top.significant
    assert top.to_dict()["filters"] == [
        {"feature": "tenure_months", "kind": "range", "low": None, "high": 6.0}
    ]


def test_minimum_support_keeps_tiny_slices_out() -> None:
    rng = np.random.default_rng(8)
    frame = pd.DataFrame({"region": np.r_[["tiny"] * 50, rng.choice(["a", "b"], 4950)]})
    errors = np.r_[np.ones(50), (rng.random(4950) < 0.1).astype(float)]
    reference = DatasetProfile.reference(frame, {"region": "string"})
    assert all(s.rows >= 100 for s in worst_segments(frame, errors, reference=reference))
    small = worst_segments(frame, errors, reference=reference, min_support=20)
    assert small[0].conditions == ("region = tiny",) and small[0].significant


def test_missing_values_and_unseen_categories_are_slices_of_their_own() -> None:
    frame = make_churn(20_000, seed=46, new_contract_share=0.05)
    rng = np.random.default_rng(46)
    unseen = (frame["contract"] == "pay-as-you-go").to_numpy()
    missing = frame["satisfaction"].isna().to_numpy()
    rate = np.where(unseen, 0.6, np.where(missing, 0.45, 0.2))
    errors = (rng.random(len(frame)) < rate).astype(float)
    found = worst_segments(frame[CHURN_FEATURES], errors, reference=churn_reference())
    names = [s.conditions for s in found if s.significant]
    assert names[0] == ("contract not in reference",)
    assert ("satisfaction is missing",) in names
    assert np.array_equal(found[0].mask(frame, churn_reference()), unseen)
    data = found[0].to_dict()
    assert data["conditions"] == ["contract not in reference"] and data["significant"] is True
    assert data["filters"] == [{"feature": "contract", "kind": "other"}]


def test_bad_input_is_refused_with_the_row_or_column_named() -> None:
    frame = make_churn(300, seed=1)[CHURN_FEATURES]
    reference = churn_reference()
    with pytest.raises(InvalidInputError, match=r"row 3 is -1\.0"):
        worst_segments(frame, np.r_[np.zeros(3), -1.0, np.zeros(296)], reference=reference)
    with pytest.raises(InvalidInputError, match="one value per row"):
        worst_segments(frame, np.zeros(10), reference=reference)
    with pytest.raises(InvalidInputError, match="none of the reference's columns"):
        worst_segments(pd.DataFrame({"x": range(300)}), np.zeros(300), reference=reference)
    broken = frame.assign(age="old")
    with pytest.raises(InvalidInputError, match="'age' must be numeric"):
        worst_segments(broken, np.zeros(300), reference=reference)
    assert KINDS["age"] == "number"


def test_many_categories_and_a_numeric_feature() -> None:
    rng = np.random.default_rng(9)
    n = 60_000
    frame = pd.DataFrame(
        {
            "shop": rng.choice([f"shop-{i:03d}" for i in range(300)], n),
            "basket": rng.exponential(50.0, n),
        }
    )
    reference = DatasetProfile.reference(frame, {"shop": "string", "basket": "number"})
    bad = (frame["shop"] == "shop-042").to_numpy()
    errors = (rng.random(n) < np.where(bad, 0.6, 0.1)).astype(float)
    found = worst_segments(frame, errors, reference=reference, min_support=50)
    assert found[0].conditions == ("shop = shop-042",)
    assert found[0].rows == int(bad.sum())
    assert sum(s.significant for s in found) == 1
