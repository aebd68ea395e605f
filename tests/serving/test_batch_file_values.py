"""Batch scoring reads a file as a JSON client would send it: an integer key written `17.0`
(pandas writes an integer column with gaps so) is the customer 17, and a 0/1 flag written
`1.0`/`0.0` is a boolean; an infinite number is refused as the API refuses it, naming row and
column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from relevo.datasets import CHURN_FEATURES, make_churn
from relevo.errors import InvalidInputError
from relevo.routing.assign import assign
from relevo.serving.batch import score_file, score_frame


def test_an_integer_key_with_gaps_routes_and_logs_as_the_api_sends_it(
    rv, churn_pipeline, churn_frame, tmp_path
):
    """pandas writes an integer column with a gap as 17.0: the key 17 (key_text: "42.0 from a
    float column is the customer 42"), as a JSON client sends it; now read as the text "17.0"."""
    champion = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", champion.ref, key="customer_id")
    small = (
        clone(churn_pipeline)
        .set_params(model__C=0.01)
        .fit(churn_frame[CHURN_FEATURES], churn_frame["churned"])
    )
    challenger = rv.registry.register("churn-small", small, churn_frame, target="churned")
    state = rv.deployments.deploy("churn", challenger.ref, weight=0.5, actor="test")
    frame = make_churn(300, seed=6)
    frame["customer_id"] = [float(i) if i % 10 else np.nan for i in range(300)]  # 17.0 in CSV
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)
    assert "\n17.0," in source.read_text() or ",17.0," in source.read_text()

    score_file(rv, "churn", source, tmp_path / "out.csv")
    scored = pd.read_csv(tmp_path / "out.csv")
    keyed = scored["customer_id"].notna().to_numpy()
    keys = [int(k) for k in frame["customer_id"][keyed]]  # what a JSON client sends: 17
    api = np.where(assign(state, keys, len(keys)) == 1, challenger.ref, champion.ref)
    assert scored["model"][keyed].tolist() == api.tolist()
    stored = {r["id"]: r for c in rv.store.predictions.iter_rows("churn") for r in c}
    logged = [stored[i]["routing_key"] for i in scored["id"][keyed]]
    assert logged == [str(k) for k in keys]  # now "17.0": feedback by key 17 no longer joins


def _member_model(rv):
    """A model with a boolean column that had gaps in the reference (nullable)."""
    rng = np.random.default_rng(0)
    n = 400
    member = rng.choice([True, False, None], n).astype(object)
    x = rng.normal(size=n)
    train = pd.DataFrame({"x": x, "member": member})
    train["y"] = ((x + (member == True)) > 0.5).astype(int)  # noqa: E712
    encode = ColumnTransformer(
        [("c", OneHotEncoder(handle_unknown="ignore"), ["member"]), ("n", "passthrough", ["x"])]
    )
    model = Pipeline([("p", encode), ("m", LogisticRegression())])
    model.fit(train[["x", "member"]], train["y"])
    version = rv.registry.register("member", model, train, target="y")
    assert {c.name: c.kind for c in version.signature.columns}["member"] == "boolean"
    rv.deployments.deploy("member", version.ref)
    return model


def test_a_boolean_column_written_as_0_0_and_1_0_is_still_read(rv, tmp_path):
    """A 0/1 flag with gaps is a float column in pandas; to_csv writes 1.0, 0.0 and "". Such a
    file was scored (the column parsed as floats, 0/1 accepted); read as text, "1.0" is now
    refused: "cannot parse '1.0' as a boolean"."""
    _member_model(rv)
    frame = pd.DataFrame(
        {"x": [0.1, 0.2, 0.3, 0.4], "member": [1.0, 0.0, np.nan, 1.0]}  # 1/0 with a gap
    )
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)
    done = score_file(rv, "member", source, tmp_path / "out.csv")
    assert done.rows == 4


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_relevo_predict_refuses_an_infinite_cell_naming_it(
    cli, rv, churn_pipeline, churn_frame, tmp_path, suffix
):
    """Not "unexpected ValueError: Input X contains infinity" from inside the model (exit 1)."""
    rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", "churn:1")
    rows = make_churn(20, seed=3).drop(columns="churned")
    rows.loc[2, "monthly_charges"] = np.inf
    rows.loc[5, "satisfaction"] = np.nan  # missing, where the reference had gaps: fine
    source = tmp_path / f"in{suffix}"
    rows.to_csv(source, index=False) if suffix == ".csv" else rows.to_parquet(source)
    result = cli("predict", "churn", "--input", source, "--output", tmp_path / "out.csv")
    assert result.exit_code == 2, result.output
    assert "row 2, column 'monthly_charges': not a finite number" in result.stderr
    assert not (tmp_path / "out.csv").exists()


def test_score_frame_refuses_an_infinite_value_naming_it(rv, churn_pipeline, churn_frame):
    rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", "churn:1")
    rows = make_churn(30, seed=3).drop(columns="churned")
    rows.loc[2, "monthly_charges"] = -np.inf
    rows = rows.astype({"tenure_months": object})  # an object column holding a float too
    rows.loc[25, "tenure_months"] = float("inf")
    with pytest.raises(InvalidInputError) as caught:
        score_frame(rv, "churn", rows, chunk_rows=20)
    assert [str(p) for p in caught.value.problems] == [
        "row 2, column 'monthly_charges': not a finite number",
        "row 25, column 'tenure_months': not a finite number",
    ]


def test_score_frame_refuses_an_integer_beyond_64_bits_in_an_object_column(
    rv, churn_pipeline, churn_frame
):
    """An object column (numbers beside text) holding 1e20 for an integer column: the JSON API
    says "too large for a 64-bit integer"; score_frame failed inside NumPy ("unexpected
    OverflowError: Python int too large to convert to C long")."""
    rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", "churn:1")
    rows = make_churn(5, seed=3).drop(columns="churned").astype({"tenure_months": object})
    rows.loc[1, "tenure_months"] = "12"
    rows.loc[3, "tenure_months"] = 1e20
    with pytest.raises(InvalidInputError) as caught:
        score_frame(rv, "churn", rows)
    assert [str(p) for p in caught.value.problems] == [
        "row 3, column 'tenure_months': too large for a 64-bit integer"
    ]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_relevo_predict_refuses_a_file_naming_a_column_twice(
    cli, rv, churn_pipeline, churn_frame, tmp_path, suffix
):
    """Which `age` would the model take? V2 refuses a tensor given twice and registration a
    reference naming a column twice; a CSV was scored with its first `age` (pandas calls the
    second `age.1`), a Parquet file failed with "unexpected ValueError" (exit 1)."""
    rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", "churn:1")
    rows = make_churn(5, seed=3).drop(columns="churned")
    rows.insert(0, "again", rows["age"] + 30)
    rows = rows.rename(columns={"again": "age"})
    assert list(rows.columns).count("age") == 2
    source = tmp_path / f"in{suffix}"
    if suffix == ".csv":
        rows.to_csv(source, index=False)
    else:  # pandas refuses to write it; pyarrow does not
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrays = [pa.array(rows.iloc[:, j].tolist()) for j in range(rows.shape[1])]
        pq.write_table(pa.Table.from_arrays(arrays, names=list(rows.columns)), source)
    result = cli("predict", "churn", "--input", source, "--output", tmp_path / "out.csv")
    assert result.exit_code == 2, result.output
    assert "names 1 column(s) more than once: column 'age'" in result.stderr
    assert not (tmp_path / "out.csv").exists()


def test_score_frame_refuses_a_frame_naming_a_column_twice(rv, churn_pipeline, churn_frame):
    rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", "churn:1")
    rows = make_churn(5, seed=3).drop(columns="churned")
    rows = pd.concat([rows, rows[["region"]]], axis=1)
    with pytest.raises(InvalidInputError) as caught:
        score_frame(rv, "churn", rows)
    assert [str(p) for p in caught.value.problems] == [
        "column 'region': a second column of this name"
    ]


def test_blank_header_cells_of_a_spreadsheet_are_not_columns_named_twice(
    cli, rv, churn_pipeline, churn_frame, tmp_path
):
    rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", "churn:1")
    source = tmp_path / "in.csv"
    text = make_churn(3, seed=3).drop(columns="churned").to_csv(index=False)
    source.write_text("".join(line + ",,\n" for line in text.splitlines()))
    result = cli("predict", "churn", "--input", source, "--output", tmp_path / "out.csv")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(("sep", "name"), [(";", "semicolons"), ("\t", "tabs")])
def test_a_file_separated_by_another_character_says_so(
    cli, rv, churn_pipeline, churn_frame, tmp_path, sep, name
):
    """A spreadsheet's CSV export in many locales is separated by `;`: the file was refused
    with one "required column is missing" per column and nothing pointing at the separator."""
    rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", "churn:1")
    source = tmp_path / "in.csv"
    make_churn(5, seed=3).drop(columns="churned").to_csv(source, index=False, sep=sep)
    result = cli("predict", "churn", "--input", source, "--output", tmp_path / "out.csv")
    assert result.exit_code == 2, result.output
    assert f"separated by {name}? relevo reads comma-separated CSV files" in result.stderr
    assert "column 'tenure_months'" in result.stderr
    assert not (tmp_path / "out.csv").exists()


def test_a_comma_separated_file_missing_a_column_gets_no_separator_hint(
    cli, rv, churn_pipeline, churn_frame, tmp_path
):
    rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", "churn:1")
    source = tmp_path / "in.csv"
    make_churn(5, seed=3).drop(columns=["churned", "age"]).to_csv(source, index=False)
    result = cli("predict", "churn", "--input", source, "--output", tmp_path / "out.csv")
    assert result.exit_code == 2, result.output
    assert "column 'age': required column is missing from the file" in result.stderr
    assert "separated by" not in result.stderr
