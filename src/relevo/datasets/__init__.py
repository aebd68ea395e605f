"""Synthetic data sets for the demo, the docs and the tests."""

from relevo.datasets.churn import (
    CHURN_CATEGORICAL,
    CHURN_FEATURES,
    CHURN_ID,
    CHURN_NUMERIC,
    CHURN_TARGET,
    SHIFTED_SEGMENT,
    make_churn,
)

__all__ = [
    "CHURN_CATEGORICAL",
    "CHURN_FEATURES",
    "CHURN_ID",
    "CHURN_NUMERIC",
    "CHURN_TARGET",
    "SHIFTED_SEGMENT",
    "make_churn",
]
