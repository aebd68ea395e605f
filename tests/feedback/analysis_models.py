"""Churn models for the analysis tests: fitted once per session on the unchanged mechanism."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from relevo.datasets import CHURN_CATEGORICAL, CHURN_FEATURES, CHURN_NUMERIC, make_churn
from relevo.monitoring import DatasetProfile

KINDS = {c: "number" for c in CHURN_NUMERIC} | {c: "string" for c in CHURN_CATEGORICAL}


@cache
def churn_model() -> Pipeline:
    """A logistic regression trained on 20,000 customers of the unchanged churn mechanism."""
    train = make_churn(20_000, seed=101)
    preprocess = make_column_transformer(
        (make_pipeline(SimpleImputer(), StandardScaler()), CHURN_NUMERIC),
        (OneHotEncoder(handle_unknown="ignore"), CHURN_CATEGORICAL),
    )
    model = make_pipeline(preprocess, LogisticRegression(max_iter=2000))
    return model.fit(train[CHURN_FEATURES], train["churned"])


@cache
def churn_reference() -> DatasetProfile:
    """The reference profile of the model's training customers (its bins slice segments)."""
    return DatasetProfile.reference(make_churn(20_000, seed=101), KINDS)


def scores(frame: pd.DataFrame) -> np.ndarray:
    """The model's churn probabilities for a churn frame."""
    return churn_model().predict_proba(frame[CHURN_FEATURES])[:, 1]
