"""Labels and feedback settings as users write them: times in any ISO form, numbers read as
text from a CSV, labels whose key matches nothing, thresholds the model cannot have, the label
window, and the time to a threshold counted from now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

from relevo.datasets import CHURN_ID, CHURN_NUMERIC, CHURN_TARGET, make_churn
from relevo.errors import InvalidInputError
from relevo.feedback.degradation import crossing_words
from relevo.feedback.labels import KeyedLabels, LabelColumns, add_labels, ingest, ingest_keyed
from relevo.feedback.service import PerformanceService
from relevo.serving.ids import new_ids

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_keyed_times_written_by_isoformat_are_all_accepted(rv, deployed, log_at, churn_frame):
    """datetime.isoformat() drops the fraction when it is 0: a file of such times mixes
    '...10:00:00+00:00' and '...10:00:00.250000+00:00'. Every one is a valid time."""
    customers = churn_frame.head(3)
    log_at(customers, T0)
    times = [
        datetime(2026, 11, 2, 10, tzinfo=UTC).isoformat(),
        datetime(2026, 11, 2, 10, 0, 0, 250000, tzinfo=UTC).isoformat(),
        "2026-11-02",  # a date alone
    ]
    chunk = KeyedLabels([0, 1, 2], customers[CHURN_ID].tolist(), times, [1, 0, 1])
    done = ingest_keyed(rv, "churn", [chunk], received_at=T0 + timedelta(days=2))
    assert done.accepted == 3 and done.unknown == []


def test_future_time_in_another_format_is_refused_as_after_now(rv, deployed, log_at, churn_frame):
    customers = churn_frame.head(2)
    log_at(customers, T0)
    now = T0 + timedelta(days=1)
    chunk = KeyedLabels(
        [0, 1],
        customers[CHURN_ID].tolist(),
        ["2026-11-01 12:00:00.5+00:00", "2099-01-01 00:00:00"],
        [1, 0],
    )
    columns = LabelColumns(key="customer", time="known_at", label="churned")
    with pytest.raises(InvalidInputError) as caught:
        ingest_keyed(rv, "churn", [chunk], received_at=now, columns=columns)
    assert [str(p) for p in caught.value.problems] == [
        "row 1, column 'known_at': 2099-01-01 00:00:00 UTC is after now (2026-11-02 00:00:00 UTC)"
    ]


def test_regression_labels_read_as_text_name_only_the_bad_row(rv):
    numeric = [c for c in CHURN_NUMERIC if c not in ("satisfaction", "monthly_charges")]
    frame = make_churn(300, seed=3)
    model = LinearRegression().fit(frame[numeric], frame["monthly_charges"])
    version = rv.registry.register("charges", model, frame, target="monthly_charges")
    rv.deployments.deploy("d", version.ref)
    ids = new_ids(3)
    rows = [
        (pid, "d", version.name, version.version, T0, None, "{}",
         orjson.dumps({"value": 50.0}).decode(), 1.0, "champion")
        for pid in ids
    ]  # fmt: skip
    rv.store.predictions.insert_many(rows)
    # pandas reads a number column with one bad cell as text: "105.12", "88.88", "?"
    with pytest.raises(InvalidInputError) as caught:
        ingest(rv, "d", [([0, 1, 2], ids, ["105.12", "88.88", "?"])])
    assert [p.row for p in caught.value.problems] == [2]


def test_wrong_type_label_refused_even_if_its_key_is_unknown(rv, deployed, log_at, churn_frame):
    customer = churn_frame.head(1)
    log_at(customer, T0)
    chunk = KeyedLabels(
        [0, 1], ["C9999999", customer[CHURN_ID].iloc[0]], ["2026-11-02", "2026-11-02"], ["yes", 1]
    )
    with pytest.raises(InvalidInputError, match="row 0"):
        ingest_keyed(rv, "churn", [chunk], received_at=T0 + timedelta(days=2))
    assert rv.store.labels.count("churn") == 0


def test_numeric_times_are_refused_not_read_as_1970(rv, deployed, log_at, churn_frame):
    customer = churn_frame.head(1)
    log_at(customer, T0)
    epoch = int((T0 + timedelta(days=1)).timestamp())
    chunk = KeyedLabels([0], [customer[CHURN_ID].iloc[0]], [epoch], [1])
    try:
        done = ingest_keyed(rv, "churn", [chunk], received_at=T0 + timedelta(days=2))
    except InvalidInputError as exc:
        assert "row 0" in str(exc)
    else:  # or read as Unix seconds, which joins the prediction
        assert done.accepted == 1, done.unknown  # fails: ['C0000000@1970-01-01T00:00:01.793...']


def test_threshold_on_a_metric_of_another_task_is_refused(rv, deployed, log_at, churn_frame):
    ids = log_at(churn_frame.head(40), T0)
    add_labels(rv, "churn", ids, churn_frame[CHURN_TARGET].head(40).tolist())
    with pytest.raises(InvalidInputError, match="r2"):
        PerformanceService(rv).performance(
            "churn", thresholds={"r2": 0.5}, now=T0 + timedelta(days=30)
        )


def test_time_to_threshold_is_not_a_crossing_already_past(rv, deployed, log_at, churn_frame):
    now = T0 + timedelta(days=30)
    rng_frame = make_churn(3000, seed=11)
    for day in range(10):
        part = rng_frame.iloc[day * 300 : (day + 1) * 300]
        ids = log_at(part, T0 + timedelta(days=day), timedelta(hours=20))
        truth = part[CHURN_TARGET].to_numpy().copy()
        flip = (pd.RangeIndex(300) % 100) < 4 * day  # more wrong answers every day
        truth[flip] = 1 - truth[flip]
        add_labels(rv, "churn", ids, truth.tolist())
    report = PerformanceService(rv).performance("churn", thresholds={"roc_auc": 0.45}, now=now)
    found = report.champion.trends["roc_auc"]
    assert found["status"] == "heading", found
    crossing = datetime.fromisoformat(found["crossing_at"])
    # the fit counts from its last window: its crossing may be past already. Shown from now:
    words = crossing_words(found, now)
    if crossing <= now:
        assert words == f"the fitted line crossed the threshold on {crossing:%Y-%m-%d}"
    else:
        days = (crossing - now).total_seconds() / 86400
        assert words == f"threshold in {days:.1f} days ({crossing:%Y-%m-%d})"
