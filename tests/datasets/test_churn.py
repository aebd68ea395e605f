"""Tests of the synthetic churn generator: shape, ranges, determinism and the drift knobs."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from sklearn.base import ClassifierMixin
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from relevo.datasets import (
    CHURN_CATEGORICAL,
    CHURN_FEATURES,
    CHURN_ID,
    CHURN_NUMERIC,
    CHURN_TARGET,
    make_churn,
)

CONTRACTS = {"month-to-month", "one-year", "two-year"}
PAYMENT_METHODS = {"electronic check", "mailed check", "bank transfer", "credit card"}
INTERNET_SERVICES = {"fiber", "dsl", "none"}
REGIONS = {"north", "south", "east", "west"}


@pytest.fixture(scope="module")
def big() -> pd.DataFrame:
    return make_churn(20_000, seed=0)


def test_constants_describe_the_columns() -> None:
    assert CHURN_TARGET == "churned"
    assert CHURN_ID == "customer_id"
    assert set(CHURN_NUMERIC).isdisjoint(CHURN_CATEGORICAL)
    assert set(CHURN_FEATURES) == set(CHURN_NUMERIC) | set(CHURN_CATEGORICAL)
    assert CHURN_ID not in CHURN_FEATURES
    assert CHURN_TARGET not in CHURN_FEATURES
    assert isinstance(CHURN_FEATURES, list)


def test_same_seed_gives_the_same_table() -> None:
    pd.testing.assert_frame_equal(make_churn(500, seed=7), make_churn(500, seed=7))
    shifted = {"ageing": 3.0, "price_change": 0.1, "new_contract_share": 0.2}
    pd.testing.assert_frame_equal(make_churn(500, 7, **shifted), make_churn(500, 7, **shifted))


def test_different_seeds_give_different_tables() -> None:
    a, b = make_churn(500, seed=1), make_churn(500, seed=2)
    for column in ["age", "tenure_months", "monthly_charges", "contract", CHURN_TARGET]:
        assert not a[column].equals(b[column]), column


def test_columns_and_dtypes() -> None:
    df = make_churn(300)
    assert list(df.columns) == [CHURN_ID, *CHURN_FEATURES, CHURN_TARGET]
    assert len(df) == 300
    for column in ["age", "tenure_months", "support_calls", CHURN_TARGET]:
        assert df[column].dtype == np.int64, column
    for column in ["monthly_charges", "satisfaction"]:
        assert df[column].dtype == np.float64, column
    for column in [CHURN_ID, *CHURN_CATEGORICAL]:
        assert pd.api.types.is_string_dtype(df[column]), column
        assert all(isinstance(value, str) for value in df[column]), column


def test_value_ranges(big: pd.DataFrame) -> None:
    assert big["age"].between(18, 90).all()
    assert big["age"].std() > 8
    assert (big["tenure_months"] >= 0).all()
    assert (big["tenure_months"] <= (big["age"] - 18) * 12).all()
    assert set(big["contract"]) == CONTRACTS
    assert (big["monthly_charges"] > 0).all()
    assert np.allclose(big["monthly_charges"], big["monthly_charges"].round(2))
    assert set(big["payment_method"]) == PAYMENT_METHODS
    assert set(big["internet_service"]) == INTERNET_SERVICES
    assert set(big["region"]) == REGIONS
    assert (big["support_calls"] >= 0).all()
    assert 0.5 < big["support_calls"].mean() < 2.0
    assert big["satisfaction"].dropna().between(1.0, 5.0).all()
    assert set(big[CHURN_TARGET]) == {0, 1}
    assert big[CHURN_ID].is_unique
    assert big[CHURN_ID].str.fullmatch(r"C\d{7}").all()


def test_satisfaction_has_about_four_percent_missing(big: pd.DataFrame) -> None:
    assert 0.03 < big["satisfaction"].isna().mean() < 0.05
    assert not big.drop(columns="satisfaction").isna().any().any()


def test_base_churn_rate(big: pd.DataFrame) -> None:
    assert 0.20 <= big[CHURN_TARGET].mean() <= 0.30


def test_churn_goes_the_documented_ways(big: pd.DataFrame) -> None:
    rate = big.groupby("contract")[CHURN_TARGET].mean()
    assert rate["month-to-month"] > rate["one-year"] > rate["two-year"]
    rate = big.groupby("payment_method")[CHURN_TARGET].mean()
    assert rate["electronic check"] == rate.max()
    rate = big.groupby("internet_service")[CHURN_TARGET].mean()
    assert rate["fiber"] > rate["dsl"] > rate["none"]
    churned = big[big[CHURN_TARGET] == 1]
    stayed = big[big[CHURN_TARGET] == 0]
    assert churned["monthly_charges"].mean() > stayed["monthly_charges"].mean() + 5
    assert churned["tenure_months"].mean() < stayed["tenure_months"].mean() - 5
    assert churned["support_calls"].mean() > stayed["support_calls"].mean() + 0.3
    assert churned["satisfaction"].mean() < stayed["satisfaction"].mean() - 0.3


def test_ageing_shifts_mean_age_by_the_given_years(big: pd.DataFrame) -> None:
    aged = make_churn(20_000, seed=0, ageing=5.0)
    assert aged["age"].mean() - big["age"].mean() == pytest.approx(5.0, abs=0.25)
    assert aged["age"].between(18, 90).all()
    unchanged = [CHURN_ID, "tenure_months", "contract", "monthly_charges", "support_calls"]
    pd.testing.assert_frame_equal(aged[unchanged], big[unchanged])


def test_price_change_scales_mean_charges(big: pd.DataFrame) -> None:
    dearer = make_churn(20_000, seed=0, price_change=0.15)
    ratio = dearer["monthly_charges"].mean() / big["monthly_charges"].mean()
    assert ratio == pytest.approx(1.15, abs=0.005)
    assert dearer[CHURN_TARGET].mean() > big[CHURN_TARGET].mean() + 0.01
    cheaper = make_churn(20_000, seed=0, price_change=-0.2)
    ratio = cheaper["monthly_charges"].mean() / big["monthly_charges"].mean()
    assert ratio == pytest.approx(0.8, abs=0.005)


def test_new_contract_share_shows_up(big: pd.DataFrame) -> None:
    assert "pay-as-you-go" not in set(big["contract"])
    shifted = make_churn(20_000, seed=0, new_contract_share=0.3)
    new = shifted["contract"] == "pay-as-you-go"
    assert new.mean() == pytest.approx(0.3, abs=0.02)
    assert set(shifted["contract"]) == {*CONTRACTS, "pay-as-you-go"}
    assert shifted.loc[new, "tenure_months"].mean() < big["tenure_months"].mean()
    pd.testing.assert_frame_equal(shifted[~new], big[~new])
    everyone = make_churn(200, seed=0, new_contract_share=1.0)
    assert set(everyone["contract"]) == {"pay-as-you-go"}


def test_mechanism_shift_changes_only_who_churns(big: pd.DataFrame) -> None:
    drifted = make_churn(20_000, seed=0, mechanism_shift=1.0)
    pd.testing.assert_frame_equal(
        drifted.drop(columns=CHURN_TARGET), big.drop(columns=CHURN_TARGET)
    )
    assert (drifted[CHURN_TARGET] != big[CHURN_TARGET]).mean() > 0.1
    assert 0.20 <= drifted[CHURN_TARGET].mean() <= 0.30


def _logistic() -> Pipeline:
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), CHURN_CATEGORICAL),
        (make_pipeline(SimpleImputer(), StandardScaler()), CHURN_NUMERIC),
    )
    return make_pipeline(encode, LogisticRegression(max_iter=1000))


def _boosting() -> Pipeline:
    encode = make_column_transformer(
        (OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), CHURN_CATEGORICAL),
        ("passthrough", CHURN_NUMERIC),
    )
    model = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, random_state=0)
    return make_pipeline(encode, model)


def _auc(model: ClassifierMixin, df: pd.DataFrame) -> float:
    return float(roc_auc_score(df[CHURN_TARGET], model.predict_proba(df[CHURN_FEATURES])[:, 1]))


@pytest.mark.parametrize("make_model", [_logistic, _boosting], ids=["logistic", "boosting"])
def test_mechanism_shift_degrades_a_trained_model(make_model: Callable[[], Pipeline]) -> None:
    train = make_churn(8000, seed=1)
    model = make_model().fit(train[CHURN_FEATURES], train[CHURN_TARGET])
    auc_normal = _auc(model, make_churn(8000, seed=2))
    auc_half = _auc(model, make_churn(8000, seed=2, mechanism_shift=0.5))
    auc_drifted = _auc(model, make_churn(8000, seed=2, mechanism_shift=1.0))
    assert 0.78 <= auc_normal <= 0.90  # learnable, not trivially separable
    assert auc_normal - auc_drifted > 0.10
    assert auc_drifted < auc_half < auc_normal


def test_id_start_gives_fresh_ids() -> None:
    first = make_churn(3, seed=5)
    later = make_churn(3, seed=5, id_start=41)
    assert list(first[CHURN_ID]) == ["C0000000", "C0000001", "C0000002"]
    assert list(later[CHURN_ID]) == ["C0000041", "C0000042", "C0000043"]
    pd.testing.assert_frame_equal(first.drop(columns=CHURN_ID), later.drop(columns=CHURN_ID))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_customers": 0}, "n_customers"),
        ({"n_customers": -5}, "n_customers"),
        ({"n_customers": 2.5}, "n_customers"),
        ({"n_customers": True}, "n_customers"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"ageing": math.nan}, "ageing"),
        ({"ageing": "old"}, "ageing"),
        ({"price_change": -1.0}, "price_change"),
        ({"price_change": math.inf}, "price_change"),
        ({"new_contract_share": -0.1}, "new_contract_share"),
        ({"new_contract_share": 1.5}, "new_contract_share"),
        ({"mechanism_shift": 2.0}, "mechanism_shift"),
        ({"mechanism_shift": math.nan}, "mechanism_shift"),
        ({"id_start": -1}, "id_start"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        make_churn(**kwargs)  # type: ignore[arg-type]
