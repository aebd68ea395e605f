"""`relevo serve` as a real process: everything answered before a graceful stop (SIGTERM) is in
the production profiles, even rows the periodic profile flush had not stored yet."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta

import pytest
from test_serve_process import _send, _start, _stop

from relevo.datasets import make_churn
from relevo.monitoring import NumericProfile
from relevo.monitoring.windows import load_window, volumes
from relevo.serving.records import frame_to_records

pytestmark = pytest.mark.slow


def test_a_graceful_stop_keeps_every_answered_row_in_the_profiles(
    deployed, rv, relevo_home, database_url, free_port, monkeypatch
):
    # profiles are stored every hour only: the graceful stop alone can store them
    monkeypatch.setenv("RELEVO_PROFILE_FLUSH_S", "3600")
    port = free_port()
    proc = _start(relevo_home, database_url, port, workers=2)
    frame = make_churn(400, seed=14).drop(columns=["churned"])
    try:
        rows = frame_to_records(frame)
        answered = _send(port, rows[:300], per_request=3) + _send(port, rows[300:], per_request=1)
    finally:
        output = _stop(proc, signal.SIGTERM)
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert answered == 400
    now = datetime.now(UTC)
    window = load_window(rv.store, "churn", now - timedelta(hours=1), now + timedelta(hours=1))
    assert window is not None
    assert window.rows == 400
    charges = window.inputs.columns["monthly_charges"]
    assert isinstance(charges, NumericProfile)
    assert charges.count + charges.missing == 400
    assert charges.mean == pytest.approx(frame.monthly_charges.mean(), rel=1e-12)
    # two worker processes, each writing its own replica's rows: together, every row
    counted = volumes(rv.store, "churn", window.since, window.until)
    assert sum(n for *_, n in counted) == 400
