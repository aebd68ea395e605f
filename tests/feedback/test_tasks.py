"""Performance of a regressor (the store's numeric path) and of a multiclass classifier (the
decoding path) equals scikit-learn's on the same joined rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LinearRegression, LogisticRegression

from relevo.datasets import CHURN_NUMERIC, make_churn
from relevo.feedback.labels import add_labels
from relevo.feedback.service import PerformanceService
from relevo.serving.ids import new_ids

DAY0 = datetime(2026, 11, 2, tzinfo=UTC)
NUMERIC = [c for c in CHURN_NUMERIC if c not in ("satisfaction", "monthly_charges")]


def _log(rv, version, outputs, when):
    ids = new_ids(len(outputs))
    rows = [
        (pid, "d", version.name, version.version, when, None, "{}", orjson.dumps(out).decode(),
         1.0, "champion")
        for pid, out in zip(ids, outputs, strict=True)
    ]  # fmt: skip
    rv.store.predictions.insert_many(rows)
    return ids


def test_regressor_metrics_equal_scikit_learn(rv):
    frame = make_churn(800, seed=3)
    model = LinearRegression().fit(frame[NUMERIC], frame["monthly_charges"])
    version = rv.registry.register("charges", model, frame, target="monthly_charges")
    assert version.task == "regression"
    rv.deployments.deploy("d", version.ref)
    value = model.predict(frame[NUMERIC])
    ids = _log(rv, version, [{"value": float(v)} for v in value], DAY0)
    truth = frame["monthly_charges"].to_numpy()
    add_labels(rv, "d", ids[:600], truth[:600].tolist())
    (m,) = PerformanceService(rv).performance("d", "1d", now=DAY0 + timedelta(days=30)).models
    got = m.windows[0].metrics
    y, v = truth[:600], value[:600]
    assert got["mae"].value == pytest.approx(skm.mean_absolute_error(y, v), abs=1e-9)
    assert got["rmse"].value == pytest.approx(np.sqrt(skm.mean_squared_error(y, v)), abs=1e-9)
    assert got["r2"].value == pytest.approx(skm.r2_score(y, v), abs=1e-9)
    assert got["mae"].count == 600 and m.windows[0].coverage == pytest.approx(0.75)


def test_multiclass_metrics_equal_scikit_learn(rv):
    frame = make_churn(900, seed=4)
    target = frame["contract"]
    model = LogisticRegression(max_iter=2000).fit(frame[NUMERIC], target)
    version = rv.registry.register("contract", model, frame, target="contract")
    assert version.task == "multiclass"
    rv.deployments.deploy("d", version.ref)
    proba = model.predict_proba(frame[NUMERIC])
    classes = list(model.classes_)
    answered = [classes[k] for k in proba.argmax(axis=1)]
    outputs = [
        {"probabilities": dict(zip(classes, row.tolist(), strict=True)), "label": label}
        for row, label in zip(proba, answered, strict=True)
    ]
    ids = _log(rv, version, outputs, DAY0)
    add_labels(rv, "d", ids, target.tolist())
    with pytest.raises(Exception, match="expected one of the model's classes"):
        add_labels(rv, "d", ids[:1], ["weekly"])
    (m,) = PerformanceService(rv).performance("d", "1d", now=DAY0 + timedelta(days=30)).models
    got = m.overall
    assert got["accuracy"].value == pytest.approx(skm.accuracy_score(target, answered), abs=1e-9)
    f1 = skm.f1_score(target, answered, average="macro")
    assert got["f1"].value == pytest.approx(f1, abs=1e-9)
    loss = skm.log_loss(target, proba, labels=classes)
    assert got["log_loss"].value == pytest.approx(loss, abs=1e-9)
    auc = skm.roc_auc_score(target, proba, multi_class="ovr", labels=classes)
    assert got["roc_auc"].value == pytest.approx(auc, abs=1e-9)
    brier = skm.brier_score_loss(target, proba, labels=classes)
    assert got["brier"].value == pytest.approx(brier, abs=1e-9)
