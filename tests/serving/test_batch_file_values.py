"""Batch scoring reads a file as a JSON client would send it: an integer key written `17.0`
(pandas writes an integer column with gaps so) is the customer 17, and a 0/1 flag written
`1.0`/`0.0` is a boolean."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from relevo.datasets import CHURN_FEATURES, make_churn
from relevo.routing.assign import assign
from relevo.serving.batch import score_file


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
