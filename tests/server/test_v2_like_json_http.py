"""The JSON API, V2 and batch scoring answer a row alike: an empty-text category the model saw,
a feature matrix with a boolean column given as true/false, a churn row with gaps."""

from __future__ import annotations

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder
from v2_inputs import post


@pytest.mark.parametrize("gaps", [False, True])
def test_an_empty_string_category_the_model_saw_is_answered_like_the_json_api(
    rv, server_settings, spawn_server, gaps
):
    """The reference has "" as a category of `plan` (with or without missing values beside it):
    the JSON API and V2 both take "" as that category, with the same probability. (Made a
    missing value, V2 refused it, or answered 0.272 where the JSON API answers 0.999.)"""
    rng = np.random.default_rng(0)
    n = 600
    plan = rng.choice(["", "basic", "pro", *([None] if gaps else [])], n).astype(object)
    train = pd.DataFrame({"x": rng.normal(size=n), "plan": plan})
    train["y"] = ((train["x"] + 2 * (train["plan"] == "")) > 0.5).astype(int)
    impute = SimpleImputer(strategy="constant", fill_value="MISSING")
    encode = ColumnTransformer(
        [
            ("c", make_pipeline(impute, OneHotEncoder(handle_unknown="ignore")), ["plan"]),
            ("n", "passthrough", ["x"]),
        ]
    )
    model = Pipeline([("p", encode), ("m", LogisticRegression())]).fit(
        train[["x", "plan"]], train["y"]
    )
    version = rv.registry.register("m", model, train, target="y")
    assert "" in version.signature.columns[1].categories  # registration knows ""
    rv.deployments.deploy("m", version.ref)
    url = spawn_server(server_settings)

    v1 = httpx.post(
        f"{url}/v1/deployments/m/predict", json={"instances": [{"x": 0.3, "plan": ""}]}, timeout=30
    )
    assert v1.status_code == 200, v1.text
    expected = v1.json()["predictions"][0]["probability"]
    assert (
        abs(expected - model.predict_proba(pd.DataFrame({"x": [0.3], "plan": [""]}))[0, 1]) < 1e-12
    )
    v2 = post(
        f"{url}/v2/models/m/infer",
        {
            "inputs": [
                {"name": "x", "datatype": "FP64", "shape": [1], "data": [0.3]},
                {"name": "plan", "datatype": "BYTES", "shape": [1], "data": [""]},
            ]
        },
    )
    assert v2.status_code == 200, v2.text
    assert abs(v2.json()["outputs"][0]["data"][0] - expected) < 1e-12


def test_a_feature_matrix_with_a_boolean_column_given_as_true_false(
    rv, server_settings, spawn_server
):
    """Layout (b), one FP64 [n, k] matrix: `df.to_numpy().tolist()` of a frame with a bool
    column gives JSON true/false in that column. The boolean column took them (NumPy: 1.0/0.0,
    0/1 is a boolean); the whole request is now a 400 "FP64 data must be numbers"."""
    rng = np.random.default_rng(0)
    n = 400
    train = pd.DataFrame({"x": rng.normal(size=n), "member": rng.random(n) < 0.5})
    train["y"] = ((train["x"] + train["member"]) > 0.5).astype(int)
    model = LogisticRegression().fit(train[["x", "member"]], train["y"])
    version = rv.registry.register("b", model, train, target="y")
    assert [c.kind for c in version.signature.columns] == ["number", "boolean"]
    rv.deployments.deploy("b", version.ref)
    url = spawn_server(server_settings)

    rows = pd.DataFrame({"x": [0.3, -1.0], "member": [True, False]})
    v1 = httpx.post(
        f"{url}/v1/deployments/b/predict", json={"instances": rows.to_dict("records")}, timeout=30
    )
    assert v1.status_code == 200, v1.text
    matrix = rows.to_numpy().tolist()  # [[0.3, True], [-1.0, False]]
    v2 = post(
        f"{url}/v2/models/b/infer",
        {"inputs": [{"name": "features", "datatype": "FP64", "shape": [2, 2], "data": matrix}]},
    )
    assert v2.status_code == 200, v2.text
    np.testing.assert_allclose(
        v2.json()["outputs"][0]["data"], [p["probability"] for p in v1.json()["predictions"]]
    )


def test_json_v2_and_batch_answer_a_row_alike(rv, live_server, tmp_path):
    """Not a failure: the same rows through the JSON API, V2 and `score_file`."""
    from relevo.datasets import CHURN_FEATURES, make_churn
    from relevo.serving.batch import score_file

    frame = make_churn(200, seed=9)
    frame.loc[::7, "satisfaction"] = np.nan  # gaps where the reference had them
    url = live_server.url
    records = [
        {k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
        for r in frame[[*CHURN_FEATURES, "customer_id"]].to_dict("records")
    ]
    v1 = httpx.post(f"{url}/v1/deployments/churn/predict", json={"instances": records}, timeout=60)
    assert v1.status_code == 200, v1.text
    p1 = np.array([p["probability"] for p in v1.json()["predictions"]])
    inputs = []
    for col in CHURN_FEATURES:
        s = frame[col]
        if pd.api.types.is_integer_dtype(s.dtype):
            inputs.append({"name": col, "datatype": "INT64", "shape": [200], "data": s.tolist()})
        elif pd.api.types.is_float_dtype(s.dtype):
            data = [None if v != v else v for v in s.tolist()]
            inputs.append({"name": col, "datatype": "FP64", "shape": [200], "data": data})
        else:
            inputs.append({"name": col, "datatype": "BYTES", "shape": [200], "data": s.tolist()})
    v2 = post(f"{url}/v2/models/churn/infer", {"inputs": inputs})
    assert v2.status_code == 200, v2.text
    p2 = np.array(v2.json()["outputs"][0]["data"])
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)
    score_file(rv, "churn", source, tmp_path / "out.csv", chunk_rows=64)
    p3 = pd.read_csv(tmp_path / "out.csv")["probability"].to_numpy()
    print("max |v1-v2|", np.abs(p1 - p2).max(), "max |v1-batch|", np.abs(p1 - p3).max())
    np.testing.assert_allclose(p2, p1, rtol=0, atol=1e-12)
    np.testing.assert_allclose(p3, p1, rtol=0, atol=1e-12)


def _churn_rows(n: int) -> pd.DataFrame:
    from relevo.datasets import CHURN_FEATURES, CHURN_ID, make_churn

    return make_churn(n, seed=3)[[*CHURN_FEATURES, CHURN_ID]]


def _refused_by_every_door(url, rv, tmp_path, frame, v2_inputs):
    """The problems (row, column) of the JSON API, a CSV and a Parquet file of `frame`, and
    V2's error (its answer is `{"error": "..."}`, each problem's place in the text)."""
    from relevo.errors import InvalidInputError
    from relevo.serving.batch import score_file

    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    v1 = httpx.post(f"{url}/v1/deployments/churn/predict", json={"instances": records}, timeout=30)
    assert v1.status_code == 422, v1.text
    found = {"json": [(p.get("row"), p["column"]) for p in v1.json()["problems"]]}
    v2 = post(f"{url}/v2/models/churn/infer", {"inputs": v2_inputs})
    assert v2.status_code == 400, v2.text
    found["v2"] = v2.json()["error"]
    for suffix in ("csv", "parquet"):
        source = tmp_path / f"in.{suffix}"
        if suffix == "csv":
            frame.to_csv(source, index=False)
        else:
            frame.to_parquet(source, index=False)
        with pytest.raises(InvalidInputError) as info:
            score_file(rv, "churn", source, tmp_path / f"out.{suffix}")
        found[suffix] = [(p.row, p.column) for p in info.value.problems]
        assert "too large for a 64-bit integer" in info.value.problems[0].message
    return found


def test_an_integer_beyond_64_bits_is_refused_naming_its_row_by_every_door(
    rv, live_server, tmp_path
):
    """age 2**63 in the second row: the JSON API named row 1; a file (pandas reads the column
    as uint64) and a V2 UINT64 tensor said only "column 'age': values too large for a 64-bit
    integer", which row unsaid."""
    from v2_inputs import json_inputs

    frame = _churn_rows(3)
    frame["age"] = pd.Series([40, 2**63, 41], dtype="uint64")
    inputs = json_inputs(frame)
    age = next(i for i in inputs if i["name"] == "age")
    age.update(datatype="UINT64", data=[40, 2**63, 41])
    found = _refused_by_every_door(live_server.url, rv, tmp_path, frame, inputs)
    assert "row 1, column 'age': too large for a 64-bit integer" in found.pop("v2")
    assert found == {k: [(1, "age")] for k in ("json", "csv", "parquet")}


def test_an_integer_that_is_2_63_as_a_float_is_refused_by_files_as_by_the_api(
    rv, live_server, tmp_path
):
    """age 2**63 - 1 fits int64 but is 2**63 as a float64, which the model's int64 input
    wraps to -2**63: the JSON API and V2 refuse it ("too large for a 64-bit integer"); a CSV
    or Parquet file's int64 column was scored, the model given -2**63."""
    from v2_inputs import json_inputs

    frame = _churn_rows(3)
    frame["age"] = np.array([40, 2**63 - 1, 41], dtype=np.int64)
    inputs = json_inputs(frame)
    assert next(i for i in inputs if i["name"] == "age")["data"][1] == 2**63 - 1
    found = _refused_by_every_door(live_server.url, rv, tmp_path, frame, inputs)
    assert "row 1, column 'age': too large for a 64-bit integer" in found.pop("v2")
    assert found == {k: [(1, "age")] for k in ("json", "csv", "parquet")}


@pytest.mark.parametrize("nan", [False, True])
def test_a_lone_surrogate_in_a_string_is_a_400_from_v2_as_from_the_json_api(live_server, nan):
    """ "\\ud800" alone (half a UTF-16 pair, no text): the JSON API answers 400 (not JSON); V2's
    second parser (for tritonclient's NaN) took it, and the model failed on it: 500."""
    from v2_inputs import json_inputs

    url = live_server.url
    rows = _churn_rows(1)
    record = rows.astype(object).where(rows.notna(), None).to_dict("records")[0]
    body = orjson.dumps({"instances": [{**record, "region": "SURROGATE"}]})
    v1 = httpx.post(
        f"{url}/v1/deployments/churn/predict",
        content=body.replace(b'"SURROGATE"', b'"\\ud800"'),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert v1.status_code == 400, v1.text
    assert "not valid JSON" in v1.json()["error"]
    inputs = json_inputs(rows)
    for tensor in inputs:
        if tensor["name"] == "region":
            tensor["data"] = ["SURROGATE"]
        if tensor["name"] == "satisfaction" and nan:
            tensor["data"] = ["NAN"]  # as tritonclient writes a NaN
    body = orjson.dumps({"inputs": inputs}).replace(b'"SURROGATE"', b'"\\ud800"')
    v2 = httpx.post(f"{url}/v2/models/churn/infer", content=body.replace(b'"NAN"', b"NaN"))
    assert v2.status_code == 400, v2.text
    assert "not valid JSON" in v2.json()["error"]
    assert "surrogate" in v2.json()["error"]


@pytest.mark.parametrize("text", ["nan", "NA", ""])
def test_text_that_means_no_value_is_missing_in_a_number_column_at_every_door(
    rv, live_server, tmp_path, text
):
    """docs/inputs.md listed "nan" among the text a number column refuses; every door takes it
    (and "NA", "") as a missing value: answered as null where the reference had gaps."""
    from v2_inputs import json_inputs

    from relevo.serving.batch import score_file

    url = live_server.url
    rows = pd.concat([_churn_rows(1)] * 2, ignore_index=True)  # one customer twice
    rows["satisfaction"] = [text, None]
    records = rows.astype(object).where(rows.notna(), None).to_dict("records")
    v1 = httpx.post(f"{url}/v1/deployments/churn/predict", json={"instances": records}, timeout=30)
    assert v1.status_code == 200, v1.text
    p_text, p_null = (p["probability"] for p in v1.json()["predictions"])
    assert p_text == p_null
    inputs = json_inputs(rows.fillna({"satisfaction": ""}))
    assert next(i for i in inputs if i["name"] == "satisfaction")["data"] == [text, ""]
    v2 = post(f"{url}/v2/models/churn/infer", {"inputs": inputs})
    assert v2.status_code == 200, v2.text
    assert v2.json()["outputs"][0]["data"] == [p_null, p_null]
    source = tmp_path / "in.csv"
    rows.to_csv(source, index=False)
    score_file(rv, "churn", source, tmp_path / "out.csv")
    assert pd.read_csv(tmp_path / "out.csv")["probability"].tolist() == [p_null, p_null]
