"""Chapter: train a churn model the way a data scientist would, and measure it on held-out data."""

from __future__ import annotations

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from relevo.datasets import (
    CHURN_CATEGORICAL,
    CHURN_FEATURES,
    CHURN_NUMERIC,
    CHURN_TARGET,
    make_churn,
)
from relevo.demo.story import Chapter, Demo


def churn_pipeline() -> Pipeline:
    """Imputation and scaling for the numbers (satisfaction has gaps), one-hot categories, and
    a logistic regression: quick to fit, quick to answer one customer."""
    preprocess = ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                CHURN_NUMERIC,
            ),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), CHURN_CATEGORICAL),
        ]
    )
    return Pipeline([("preprocess", preprocess), ("model", LogisticRegression(max_iter=1000))])


def run(demo: Demo) -> None:
    options = demo.options
    data = make_churn(options.train_customers, seed=options.seed)
    train, holdout = train_test_split(
        data, test_size=0.25, random_state=options.seed, stratify=data[CHURN_TARGET]
    )
    demo.view.say(
        f"Generated {len(data):,} customers with [bold]make_churn[/] (seed {options.seed}): "
        f"{data[CHURN_TARGET].mean():.1%} churned, "
        f"{data['satisfaction'].isna().mean():.1%} lack a satisfaction score."
    )
    model = churn_pipeline()
    with demo.view.status(f"fitting on {len(train):,} customers"):
        model.fit(train[CHURN_FEATURES], train[CHURN_TARGET])
    auc = float(
        roc_auc_score(holdout[CHURN_TARGET], model.predict_proba(holdout[CHURN_FEATURES])[:, 1])
    )
    demo.view.say(
        f"Fitted a scikit-learn pipeline on {len(train):,} of them: imputer and scaler for the "
        "numbers, one-hot encoding for the categories, then a logistic regression."
    )
    demo.view.say(
        f"ROC AUC on the {len(holdout):,} held out: [bold green]{auc:.3f}[/]  "
        "[dim](0.5 = a coin toss, 1.0 = a perfect ranking of who leaves)[/]"
    )
    demo.train, demo.holdout, demo.model = train, holdout, model
    demo.summary["auc"] = round(auc, 4)
    demo.summary["train_rows"] = len(train)


CHAPTER = Chapter(
    key="train",
    title="Train",
    why="The data scientist's part: fit a churn model on past customers, measure it on others.",
    run=run,
)
