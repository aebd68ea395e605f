"""Label ingestion: by id and by key and time, replacement counted, unknown ids reported, wrong
types refused with nothing stored; export carries the labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from relevo.datasets import CHURN_ID
from relevo.errors import InvalidInputError, NotFoundError
from relevo.feedback.labels import KeyedLabels, LabelColumns, ingest, ingest_keyed

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _chunk(ids, labels):
    return [(list(range(1, len(ids) + 1)), list(ids), list(labels))]


def test_labels_by_id_replace_and_unknown(rv, deployed, log_at, churn_frame):
    ids = log_at(churn_frame.head(20), T0)
    first = ingest(rv, "churn", _chunk(ids[:10], [1, 0] * 5))
    assert (first.accepted, first.replaced, first.unknown) == (10, 0, [])
    again = ingest(rv, "churn", _chunk([*ids[:3], "nope-1", "nope-2"], [0, 0, 0, 1, 1]))
    assert again.accepted == 3
    assert again.replaced == 3
    assert again.unknown == ["nope-1", "nope-2"]
    stored = rv.store.labels.get(ids[0])
    assert stored is not None
    assert stored["label"] == "0" and stored["revisions"] == 2
    assert stored["predicted_at"] == T0
    assert rv.store.labels.count("churn") == 10


def test_repeated_id_in_one_upload_last_wins(rv, deployed, log_at, churn_frame):
    ids = log_at(churn_frame.head(2), T0)
    done = ingest(rv, "churn", _chunk([ids[0], ids[0], ids[1]], [1, 0, 1]))
    assert done.accepted == 3 and done.replaced == 1
    stored = rv.store.labels.get(ids[0])
    assert stored is not None
    assert stored["label"] == "0" and stored["revisions"] == 2


def test_wrong_type_refuses_everything_naming_rows(rv, deployed, log_at, churn_frame):
    ids = log_at(churn_frame.head(5), T0)
    with pytest.raises(InvalidInputError) as caught:
        ingest(rv, "churn", _chunk(ids, [1, "yes", 0, 2, 1]))
    rows = [p.row for p in caught.value.problems]
    assert rows == [2, 4]
    assert "expected one of the model's classes" in str(caught.value)
    assert rv.store.labels.count("churn") == 0


def test_refused_later_chunk_stores_nothing_of_earlier_ones(rv, deployed, log_at, churn_frame):
    ids = log_at(churn_frame.head(6), T0)
    chunks = [([1, 2, 3], ids[:3], [1, 0, 1]), ([4, 5, 6], ids[3:], [0, None, 1])]
    with pytest.raises(InvalidInputError, match="row 5"):
        ingest(rv, "churn", chunks)
    assert rv.store.labels.count("churn") == 0


def test_labels_for_another_deployments_ids_are_unknown(rv, deployed, log_at, churn_frame):
    rv.deployments.deploy("other", deployed.ref)
    other = log_at(churn_frame.head(3), T0, deployment="other")
    done = ingest(rv, "churn", _chunk(other, [1, 1, 1]))
    assert done.accepted == 0 and sorted(done.unknown) == sorted(other)


def test_unknown_deployment(rv, deployed):
    with pytest.raises(NotFoundError):
        ingest(rv, "nope", _chunk(["a"], [1]))


def test_by_key_and_time_takes_latest_prediction_before(rv, deployed, log_at, churn_frame):
    customer = churn_frame.head(1)
    early = log_at(customer, T0)[0]
    late = log_at(customer, T0 + timedelta(days=3))[0]
    after = log_at(customer, T0 + timedelta(days=10))[0]
    key = str(customer[CHURN_ID].iloc[0])
    chunk = KeyedLabels(
        [1, 2, 3],
        [key, key, "C9999999"],
        [T0 + timedelta(days=4), T0 + timedelta(days=1), T0 + timedelta(days=4)],
        [1, 0, 1],
    )
    done = ingest_keyed(rv, "churn", [chunk], window=timedelta(days=30))
    assert done.accepted == 2
    assert done.unknown == [f"C9999999@{(T0 + timedelta(days=4)).isoformat()}"]
    assert rv.store.labels.get(late)["label"] == "1"  # type: ignore[index]
    assert rv.store.labels.get(early)["label"] == "0"  # type: ignore[index]
    assert rv.store.labels.get(after) is None


def test_by_key_outside_window_is_unknown(rv, deployed, log_at, churn_frame):
    customer = churn_frame.head(1)
    log_at(customer, T0)
    key = str(customer[CHURN_ID].iloc[0])
    chunk = KeyedLabels([1], [key], [T0 + timedelta(days=45)], [1])
    done = ingest_keyed(
        rv, "churn", [chunk], window=timedelta(days=30), received_at=T0 + timedelta(days=46)
    )
    assert done.accepted == 0 and len(done.unknown) == 1


def test_export_has_true_labels(rv, deployed, log_at, churn_frame, tmp_path):
    from relevo.serving.export import export_predictions

    ids = log_at(churn_frame.head(4), T0)
    ingest(rv, "churn", _chunk(ids[:2], [1, 0]))
    out = tmp_path / "log.parquet"
    assert export_predictions(rv, "churn", out) == 4
    frame = pd.read_parquet(out).set_index("id")
    assert frame.loc[ids[0], "true_label"] == 1
    assert frame.loc[ids[1], "true_label"] == 0
    assert pd.isna(frame.loc[ids[2], "true_label"])
    assert frame["label_received_at"].notna().sum() == 2
    # sent by id: the truth counts as known when it was uploaded
    assert frame["label_known_at"].dropna().tolist() == frame["label_received_at"].dropna().tolist()


def test_labels_in_any_order_and_ids_with_tabs_or_backslashes(rv, deployed, log_at, churn_frame):
    """Ids sent out of order are stored as sent; an id holding a tab or a backslash is
    reported back exactly as sent (it is escaped on its way to the database, not mangled)."""
    ids = log_at(churn_frame.head(6), T0)
    odd = ["tab\there", "back\\slash"]
    sent = [*reversed(ids), *odd]
    values = [1, 0, 1, 1, 0, 0, 1, 1]
    done = ingest(rv, "churn", _chunk(sent, values))
    assert (done.accepted, done.replaced) == (6, 0)
    assert sorted(done.unknown) == sorted(odd)
    for pid, value in zip(sent[:6], values[:6], strict=True):
        stored = rv.store.labels.get(pid)
        assert stored is not None and stored["label"] == str(value)


def test_keyed_label_is_known_at_its_time_and_the_delay_ends_there(
    rv, deployed, log_at, churn_frame
):
    """A label sent by key and time keeps that time as when its truth became known, beside the
    upload's; the label delay runs from the prediction to it, not to the upload."""
    from relevo.feedback.service import PerformanceService

    customers = churn_frame.head(4)
    ids = log_at(customers, T0)
    known = T0 + timedelta(days=7)
    uploaded = T0 + timedelta(days=20)
    chunk = KeyedLabels(
        [1, 2, 3, 4],
        customers[CHURN_ID].tolist(),
        [known.isoformat()] * 4,
        customers["churned"].tolist(),
    )
    assert ingest_keyed(rv, "churn", [chunk], received_at=uploaded).accepted == 4
    stored = rv.store.labels.get(ids[0])
    assert stored is not None
    assert (stored["known_at"], stored["received_at"]) == (known, uploaded)
    # by id, the truth counts as known at the upload
    ingest(rv, "churn", _chunk(ids[:1], [1]), received_at=uploaded + timedelta(days=1))
    again = rv.store.labels.get(ids[0])
    assert again is not None and again["known_at"] == again["received_at"]

    window = PerformanceService(rv).performance("churn", "1d").champion.windows[0]
    # three labels known 7 days (168 h) after their prediction, one 21 days: the median is 168
    assert window.label_delay_hours == pytest.approx(168.0)


def test_repeated_keyed_label_keeps_the_last_ones_time(rv, deployed, log_at, churn_frame):
    customer = churn_frame.head(1)
    (pid,) = log_at(customer, T0)
    key = str(customer[CHURN_ID].iloc[0])
    times = [T0 + timedelta(days=2), T0 + timedelta(days=5)]
    chunk = KeyedLabels([1, 2], [key, key], times, [0, 1])
    done = ingest_keyed(rv, "churn", [chunk], received_at=T0 + timedelta(days=6))
    assert (done.accepted, done.replaced) == (2, 1)
    stored = rv.store.labels.get(pid)
    assert stored is not None and (stored["label"], stored["known_at"]) == ("1", times[1])


def test_keyed_labels_from_the_future_are_refused_by_row_and_column(
    rv, deployed, log_at, churn_frame
):
    customers = churn_frame.head(3)
    log_at(customers, T0)
    now = T0 + timedelta(days=1)
    chunk = KeyedLabels(
        [1, 2, 3],
        customers[CHURN_ID].tolist(),
        [T0 + timedelta(hours=1), now + timedelta(days=7), "soon"],
        ["1", 0, "yes"],
    )
    columns = LabelColumns(key="customer", time="known_at", label="churned")
    with pytest.raises(InvalidInputError) as caught:
        ingest_keyed(rv, "churn", [chunk], received_at=now, columns=columns)
    assert [str(p) for p in caught.value.problems] == [
        "row 3, column 'known_at': expected a time, got 'soon'",
        "row 2, column 'known_at': 2026-11-09 00:00:00 UTC is after now (2026-11-02 00:00:00 UTC)",
    ]
    assert rv.store.labels.count("churn") == 0
    chunk = KeyedLabels(
        [1, 2], customers[CHURN_ID].tolist()[:2], [T0 + timedelta(hours=1)] * 2, [1, "yes"]
    )
    with pytest.raises(InvalidInputError, match="row 2, column 'churned': expected one of"):
        ingest_keyed(rv, "churn", [chunk], received_at=now, columns=columns)
    # a sender's clock a little fast is not the future: a minute ahead is stored as given
    ahead = now + timedelta(minutes=1)
    chunk = KeyedLabels([1], customers[CHURN_ID].tolist()[:1], [ahead], [1])
    assert ingest_keyed(rv, "churn", [chunk], received_at=now, columns=columns).accepted == 1


def test_keyed_label_without_a_key_is_refused_by_row_and_column(rv, deployed, log_at, churn_frame):
    customers = churn_frame.head(2)
    log_at(customers, T0)
    chunk = KeyedLabels(
        [1, 2], [customers[CHURN_ID].iloc[0], float("nan")], [T0 + timedelta(hours=1)] * 2, [1, 0]
    )
    with pytest.raises(InvalidInputError) as caught:
        ingest_keyed(rv, "churn", [chunk], columns=LabelColumns(key="customer_id"))
    assert [str(p) for p in caught.value.problems] == [
        "row 2, column 'customer_id': the routing key is missing"
    ]
    assert rv.store.labels.count("churn") == 0


def test_a_float_key_is_the_integer_key_the_log_keeps(rv, deployed, log_at, churn_frame):
    """A key column with gaps is read as floats (10001.0): it routes and is logged as 10001."""
    customer = churn_frame.head(1).assign(**{CHURN_ID: 10001})
    (pid,) = log_at(customer, T0)
    chunk = KeyedLabels([1], [10001.0], [T0 + timedelta(hours=1)], [1])
    done = ingest_keyed(rv, "churn", [chunk], window=timedelta(days=30))
    assert done.accepted == 1 and done.unknown == []
    assert rv.store.labels.get(pid)["label"] == "1"  # type: ignore[index]
