"""Label ingestion: by id and by key and time, replacement counted, unknown ids reported, wrong
types refused with nothing stored; export carries the labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from relevo.datasets import CHURN_ID
from relevo.errors import InvalidInputError, NotFoundError
from relevo.feedback.labels import KeyedLabels, ingest, ingest_keyed

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
    done = ingest_keyed(rv, "churn", [chunk], window=timedelta(days=30))
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
