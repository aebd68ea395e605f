"""Multiclass and regression models answer with their own output shapes over real HTTP."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import Ridge

from relevo.serving.records import frame_to_records


@pytest.fixture
def task_models(rv):
    iris = load_iris(as_frame=True)
    x_iris = iris.data
    labels = iris.target.map(dict(enumerate(iris.target_names)))  # string classes
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(x_iris, labels)
    ref = x_iris.assign(species=labels)
    rv.registry.register("iris", forest, ref, target="species")
    rv.deployments.deploy("iris", "iris:1")

    diabetes = load_diabetes(as_frame=True)
    ridge = Ridge().fit(diabetes.data, diabetes.target)
    rv.registry.register("diabetes", ridge, diabetes.data.assign(y=diabetes.target), target="y")
    rv.deployments.deploy("diabetes", "diabetes:1")
    return forest, x_iris, ridge, diabetes.data


@pytest.fixture
def url(task_models, server_settings, spawn_server):
    return spawn_server(server_settings)


def test_multiclass_answers_every_class_probability(url, task_models):
    forest, x_iris, _, _ = task_models
    rows = x_iris.iloc[::30]
    response = httpx.post(
        f"{url}/v1/deployments/iris/predict", json={"instances": frame_to_records(rows)}
    )
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    expected = forest.predict_proba(rows)
    for got, want, label in zip(predictions, expected, forest.predict(rows), strict=True):
        assert list(got["probabilities"]) == list(forest.classes_)
        np.testing.assert_allclose(list(got["probabilities"].values()), want)
        assert got["label"] == label
        assert got["model"] == "iris:1"


def test_regression_answers_values(url, task_models):
    _, _, ridge, x = task_models
    rows = x.head(7)
    response = httpx.post(
        f"{url}/v1/deployments/diabetes/predict", json={"instances": frame_to_records(rows)}
    )
    assert response.status_code == 200
    values = [p["value"] for p in response.json()["predictions"]]
    np.testing.assert_allclose(values, ridge.predict(rows), rtol=1e-12)
    assert "probability" not in response.json()["predictions"][0]
