"""The shadow comparison read from stored rows: a NaN output (stored as null) counts for no
difference and never fails `relevo status`; the shadow's latency is reported without the log."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from sklearn.base import clone
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from relevo.datasets import CHURN_NUMERIC, CHURN_TARGET
from relevo.routing.stats import shadow_comparison
from relevo.serving.ids import new_ids
from relevo.store.shadows import ShadowRow


def _log(rv, ids, model, outputs, when):
    name, version = model.split(":")
    rv.store.predictions.insert_many(
        [
            (pid, "d", name, int(version), when, None, "{}", orjson.dumps(o).decode(), 1.0,
             "champion")
            for pid, o in zip(ids, outputs, strict=True)
        ]
    )  # fmt: skip


def _shadow(rv, ids, model, outputs, when):
    name, version = model.split(":")
    rv.store.shadows.insert_many(
        [
            ShadowRow(pid, "d", name, int(version), when, orjson.dumps(o).decode(), None, 2.0)
            for pid, o in zip(ids, outputs, strict=True)
        ]
    )


def _pair(rv, model, frame, target):
    a = rv.registry.register("m", model, frame, target=target)
    b = rv.registry.register("m", clone(model).fit(frame[CHURN_NUMERIC], frame[target]), frame,
                             target=target)  # fmt: skip
    rv.deployments.deploy("d", a.ref)
    rv.deployments.deploy("d", b.ref, strategy="shadow")
    return a, b


def test_a_regression_shadow_with_a_nan_value_is_compared_on_the_other_rows(rv, churn_frame):
    frame = churn_frame[[*CHURN_NUMERIC, CHURN_TARGET]].dropna()
    frame = frame.assign(**{CHURN_TARGET: frame[CHURN_TARGET].astype(float)})
    model = make_pipeline(StandardScaler(), LinearRegression())
    a, b = _pair(rv, model.fit(frame[CHURN_NUMERIC], frame[CHURN_TARGET]), frame, CHURN_TARGET)
    when, ids = datetime.now(UTC), new_ids(3)
    _log(rv, ids, a.ref, [{"value": 1.0}, {"value": float("nan")}, {"value": 3.0}], when)
    _shadow(rv, ids, b.ref, [{"value": 1.5}, {"value": 2.0}, {"value": 2.0}], when)
    found = shadow_comparison(rv.store, rv.deployments.get("d"))
    assert found is not None and found["rows_compared"] == 3
    assert found["value_difference"]["mean"] == 0.75  # |1 - 1.5| and |3 - 2|
    assert found["value_difference"]["max"] == 1.0


def test_a_multiclass_shadow_with_a_nan_probability_is_compared_on_the_other_rows(rv, churn_frame):
    frame = churn_frame[[*CHURN_NUMERIC]].dropna().copy()
    frame["tier"] = (frame[CHURN_NUMERIC[0]].rank(pct=True) * 3).astype(int).clip(0, 2)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    a, b = _pair(rv, model.fit(frame[CHURN_NUMERIC], frame["tier"]), frame, "tier")
    assert a.task == "multiclass"
    when, ids, nan = datetime.now(UTC), new_ids(2), float("nan")
    _log(
        rv,
        ids,
        a.ref,
        [
            {"probabilities": {"0": 0.2, "1": 0.3, "2": 0.5}, "label": 2},
            {"probabilities": {"0": nan, "1": nan, "2": nan}, "label": 0},
        ],
        when,
    )
    _shadow(
        rv,
        ids,
        b.ref,
        [
            {"probabilities": {"0": 0.1, "1": 0.3, "2": 0.6}, "label": 2},
            {"probabilities": {"0": 0.2, "1": 0.3, "2": 0.5}, "label": 2},
        ],
        when,
    )
    found = shadow_comparison(rv.store, rv.deployments.get("d"))
    assert found is not None and found["rows_compared"] == 2
    assert abs(found["probability_difference"]["max"] - 0.1) < 1e-12  # the first row only
    assert found["label_agreement"] == 0.5


def test_the_shadows_latency_is_reported_without_the_prediction_log(
    rv, churn_pipeline, churn_frame
):
    a = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    b = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("d", a.ref)
    rv.deployments.deploy("d", b.ref, strategy="shadow")
    _shadow(rv, new_ids(3), b.ref, [{"probability": 0.2, "label": 0}] * 3, datetime.now(UTC))
    found = shadow_comparison(rv.store, rv.deployments.get("d"))
    assert found is not None and found["rows"] == 3 and found["rows_compared"] == 0
    assert found["shadow_latency_ms"]["p50"] == 2.0


def test_status_counts_the_rows_a_shadow_failed_on_as_mirrored_not_scored(rv, cli, churn_frame):
    """`relevo status` showed "rows scored 3" beside "shadow errors 1": the failed row was
    never scored, yet the count included it."""
    frame = churn_frame[[*CHURN_NUMERIC, CHURN_TARGET]].dropna()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    a, b = _pair(rv, model.fit(frame[CHURN_NUMERIC], frame[CHURN_TARGET]), frame, CHURN_TARGET)
    when, ids = datetime.now(UTC), new_ids(3)
    out = [{"probability": 0.25, "label": 0}, {"probability": 0.75, "label": 1}]
    _log(rv, ids, a.ref, [*out, {"probability": 0.5, "label": 1}], when)
    _shadow(rv, ids[:2], b.ref, out, when)
    rv.store.shadows.insert_many(
        [ShadowRow(ids[2], "d", b.name, b.version, when, None, "ValueError: no", 0.0)]
    )
    shown = cli("status", "d")
    assert shown.exit_code == 0, shown.output
    lines = {
        " ".join(line.strip("│┃ ").split("│")[0].split()): line
        for line in shown.stdout.splitlines()
    }
    assert "3" in lines["rows mirrored"] and "rows scored" not in shown.stdout
    assert "2" in lines["rows compared"] and "1 (33.3%)" in lines["shadow errors"]
