"""V2 tensors mean what docs/inputs.md says, as the JSON API does: `""` and NaN are missing in a
string column, true/false is no number, and no float wraps around in an integer column."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from v2_inputs import post


def _two_string_columns(rv, server_settings, spawn_server) -> str:
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "colour": rng.choice(["red", "blue"], size=n).astype(object),  # never missing
            "city": rng.choice(["paris", "rome", None], size=n).astype(object),  # sometimes
        }
    )
    frame["y"] = (frame["x"] + (frame["colour"] == "red") > 0.5).astype(int)
    impute = SimpleImputer(strategy="constant", fill_value="MISSING")
    pre = ColumnTransformer(
        [
            ("num", "passthrough", ["x"]),
            (
                "cat",
                make_pipeline(impute, OneHotEncoder(handle_unknown="ignore")),
                ["colour", "city"],
            ),
        ]
    )
    model = make_pipeline(pre, LogisticRegression()).fit(frame[["x", "colour", "city"]], frame["y"])
    version = rv.registry.register("m", model, frame, target="y")
    rv.deployments.deploy("m", version.ref)
    return spawn_server(server_settings)


def _v2_m(url: str, colour: Any, city: Any, city_type: str = "BYTES") -> httpx.Response:
    return post(
        f"{url}/v2/models/m/infer",
        {
            "inputs": [
                {"name": "x", "datatype": "FP64", "shape": [1], "data": [0.3]},
                {"name": "colour", "datatype": "BYTES", "shape": [1], "data": [colour]},
                {"name": "city", "datatype": city_type, "shape": [1], "data": [city]},
            ]
        },
    )


def test_a_null_in_bytes_data_or_a_nan_is_missing_in_a_string_column(
    rv, server_settings, spawn_server
):
    """A missing string over V2, as the JSON API's null: `null` in a BYTES tensor's JSON data,
    or NaN in a float tensor (it reached the model as the text "nan"); refused where the
    reference had none. `""` is the empty text, as in the JSON API."""
    url = _two_string_columns(rv, server_settings, spawn_server)

    def v1(city: Any) -> float:
        answer = httpx.post(
            f"{url}/v1/deployments/m/predict",
            json={"instances": [{"x": 0.3, "colour": "red", "city": city}]},
            timeout=30,
        )
        return float(answer.json()["predictions"][0]["probability"])

    for city, city_type in [(None, "BYTES"), (None, "FP64")]:
        got = _v2_m(url, "red", city, city_type).json()["outputs"][0]["data"][0]
        assert abs(got - v1(None)) < 1e-12, (city_type, got)
    empty = _v2_m(url, "red", "").json()["outputs"][0]["data"][0]
    assert abs(empty - v1("")) < 1e-12
    # never missing in the reference: refused, as the JSON API refuses null (422)
    refused = _v2_m(url, None, "rome")
    assert refused.status_code == 400 and "colour" in refused.text, refused.text


def _regression(rv, churn_frame, server_settings, spawn_server) -> str:
    df = churn_frame[["age", "tenure_months", "monthly_charges"]]
    model = LinearRegression().fit(df[["age", "tenure_months"]], df["monthly_charges"])
    version = rv.registry.register("reg", model, df, target="monthly_charges")
    rv.deployments.deploy("reg", version.ref)
    return spawn_server(server_settings)


def test_a_bool_tensor_is_not_a_number(rv, churn_frame, server_settings, spawn_server):
    """docs/inputs.md: number and integer columns refuse true/false, as the JSON API and batch
    scoring do; V2 fed true as 1."""
    url = _regression(rv, churn_frame, server_settings, spawn_server)
    v1 = httpx.post(
        f"{url}/v1/deployments/reg/predict",
        json={"instances": [{"age": True, "tenure_months": 3}]},
        timeout=30,
    )
    assert v1.status_code == 422, v1.text
    doc = {
        "inputs": [
            {"name": "age", "datatype": "BOOL", "shape": [1], "data": [True]},
            {"name": "tenure_months", "datatype": "INT64", "shape": [1], "data": [3]},
        ]
    }
    response = post(f"{url}/v2/models/reg/infer", doc)
    assert response.status_code == 400, response.text  # was 200, computed with age=1
    assert "age" in response.text and "bool" in response.json()["error"]


def test_a_float_too_large_for_an_integer_column_is_not_wrapped(
    rv, churn_frame, server_settings, spawn_server
):
    """FP64 1e19 for an integer column was cast to -2**63 (the model saw a negative age and
    answered with the opposite sign); it is refused, as BYTES "1e19" is."""
    url = _regression(rv, churn_frame, server_settings, spawn_server)

    def v2(datatype: str, age: Any) -> httpx.Response:
        return post(
            f"{url}/v2/models/reg/infer",
            {
                "inputs": [
                    {"name": "age", "datatype": datatype, "shape": [1], "data": [age]},
                    {"name": "tenure_months", "datatype": "INT64", "shape": [1], "data": [3]},
                ]
            },
        )

    assert v2("BYTES", "1e19").status_code == 400
    response = v2("FP64", 1e19)
    assert response.status_code == 400, response.text
    assert "too large for a 64-bit integer" in response.text and "age" in response.text
    assert v2("FP64", 41.0).status_code == 200
