"""V2 under a canary, over real HTTP: an infer whose rows were split between the champion and
the challenger names the model of every row in `parameters.models`."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
from sklearn.base import clone

from relevo.datasets import CHURN_FEATURES, CHURN_ID, CHURN_TARGET, make_churn
from relevo.routing.assign import assign


def _json_inputs(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """One JSON tensor per feature column plus the routing key; a missing number is null."""
    inputs = []
    for col in [*CHURN_FEATURES, CHURN_ID]:
        series = rows[col]
        if pd.api.types.is_integer_dtype(series.dtype):
            data, datatype = series.to_numpy(dtype=np.int64).tolist(), "INT64"
        elif pd.api.types.is_float_dtype(series.dtype):
            data, datatype = series.to_numpy(dtype=np.float64).tolist(), "FP64"
        else:
            data, datatype = series.astype(str).tolist(), "BYTES"
        values = [None if v != v else v for v in data]
        inputs.append({"name": col, "datatype": datatype, "shape": [len(rows)], "data": values})
    return inputs


def _infer(url: str, rows: pd.DataFrame) -> dict[str, Any]:
    body = orjson.dumps({"inputs": _json_inputs(rows)})
    response = httpx.post(f"{url}/v2/models/churn/infer", content=body, timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_v2_names_the_model_of_every_row_when_a_canary_split_them(
    rv, deployed, churn_pipeline, churn_frame, server_settings, spawn_server
):
    other = clone(churn_pipeline).set_params(model__C=0.01)
    other.fit(churn_frame[CHURN_FEATURES], churn_frame[CHURN_TARGET])
    challenger = rv.registry.register("churn-small", other, churn_frame, target="churned")
    url = spawn_server(server_settings)

    rows = make_churn(50, seed=11)[[CHURN_ID, *CHURN_FEATURES]]
    # the champion alone: no `models` parameter
    before = _infer(url, rows)
    assert before["model_version"] == "1"
    assert "parameters" not in before

    state = rv.deployments.deploy("churn", challenger.ref, weight=0.5, actor="test")
    expected = assign(state, rows[CHURN_ID].tolist(), len(rows)).astype(bool)
    assert 0 < expected.sum() < len(rows)  # these 50 keys do split at 0.5
    want = [challenger.ref if e else deployed.ref for e in expected]

    # the server applies the new state within its poll interval: ask until the split shows
    doc = _infer(url, rows)
    for _ in range(300):
        if "parameters" in doc:
            break
        doc = _infer(url, rows)
    assert doc["parameters"] == {"models": want}
    assert doc["model_name"] == "churn"
    assert doc["model_version"] == "1"  # the champion's

    # each row's probability comes from the model that the parameter names
    outputs = {o["name"]: o for o in doc["outputs"]}
    features = rows[CHURN_FEATURES]
    champion = churn_pipeline.predict_proba(features)[:, 1]
    small = other.predict_proba(features)[:, 1]
    np.testing.assert_allclose(
        outputs["probability"]["data"], np.where(expected, small, champion), rtol=1e-9
    )
