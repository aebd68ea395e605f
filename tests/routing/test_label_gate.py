"""The label gate (issue 14): once enough labels have matured, a canary challenger whose label
metric (ROC AUC) is worse than the champion's on the rows they answered is rolled back by the
rollout evaluator with the reason in the history; with too few labels a step is not held."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

import relevo
from relevo.datasets import CHURN_FEATURES, CHURN_TARGET, make_churn
from relevo.feedback.labels import add_labels
from relevo.feedback.service import label_metric
from relevo.routing.evaluator import evaluate_once


@pytest.fixture
def canary(rv: relevo.Relevo, churn_pipeline: Pipeline, churn_frame: pd.DataFrame) -> None:
    coin = DummyClassifier(strategy="uniform", random_state=0).fit(
        churn_frame[CHURN_FEATURES], churn_frame[CHURN_TARGET]
    )
    rv.registry.register("churn", churn_pipeline, churn_frame, target=CHURN_TARGET)
    rv.registry.register("coin", coin, churn_frame, target=CHURN_TARGET)
    rv.deployments.deploy("churn", "churn:1")
    rv.deployments.deploy("churn", "coin:1", strategy="canary", weight=0.5)


def _serve(rv: relevo.Relevo, model: str, role: str, proba: np.ndarray, start: int) -> list[str]:
    """Rows in the prediction log as the server writes them; returns their ids."""
    name, version = model.split(":")
    when = datetime.now(UTC) + timedelta(seconds=1)
    ids = [f"p{start + i:07d}" for i in range(len(proba))]
    rows = [
        (
            pid,
            "churn",
            name,
            int(version),
            when,
            None,
            "{}",
            orjson.dumps({"probability": float(p), "label": int(p >= 0.5)}).decode(),
            1.0,
            role,
        )
        for pid, p in zip(ids, proba, strict=True)
    ]
    rv.store.predictions.insert_many(rows)
    return ids


def test_a_challenger_worse_on_matured_labels_is_rolled_back(
    rv: relevo.Relevo, canary: None, churn_pipeline: Pipeline
):
    customers = make_churn(600, seed=11)
    truth = customers[CHURN_TARGET].to_numpy()
    good = churn_pipeline.predict_proba(customers[CHURN_FEATURES])[:, 1]
    coin = np.random.default_rng(0).uniform(size=600)
    champion_ids = _serve(rv, "churn:1", "champion", good[:300], 0)
    challenger_ids = _serve(rv, "coin:1", "challenger", coin[300:], 300)
    add_labels(rv, "churn", champion_ids + challenger_ids, truth.tolist())

    pair = label_metric(rv, rv.deployments.get("churn"))
    assert pair is not None
    champion, challenger = pair
    assert champion.rows == challenger.rows == 300
    assert champion.value == pytest.approx(roc_auc_score(truth[:300], good[:300]), abs=1e-9)
    assert challenger.value == pytest.approx(roc_auc_score(truth[300:], coin[300:]), abs=1e-9)

    found = evaluate_once(rv, "test-holder", 30.0)
    assert found["churn"].decision.move == "rollback"
    assert rv.deployments.get("churn").model_ref == "churn:1"
    assert "label_metric" in (rv.deployments.history("churn")[-1].reason or "")


def test_too_few_labels_do_not_hold_or_fail_a_challenger(
    rv: relevo.Relevo, canary: None, churn_pipeline: Pipeline
):
    customers = make_churn(40, seed=12)
    coin = np.random.default_rng(1).uniform(size=40)
    ids = _serve(rv, "coin:1", "challenger", coin, 0)
    add_labels(rv, "churn", ids, customers[CHURN_TARGET].tolist())
    found = evaluate_once(rv, "test-holder", 30.0)
    gates = {g.gate: g for g in found["churn"].decision.results}
    assert gates["label_metric"].verdict == "pass"
    assert "not checked" in gates["label_metric"].detail
    assert rv.deployments.get("churn").challenger_ref == "coin:1"
