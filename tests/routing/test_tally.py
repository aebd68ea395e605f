"""The gates' numbers are kept up to date from the prediction log by reading only what is new
(`relevo.routing.tally`): the counts equal a full count of the logged rows and the latency
quantiles are within 0.5 % of NumPy's nearest-rank ones, however the rows are split into
slices and looks; a look reads the settled rows once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

import relevo
from relevo.datasets import CHURN_TARGET
from relevo.routing import tally as tallies
from relevo.routing.stats import arms, rollout_stats
from relevo.routing.tally import SETTLE_S, Latencies, Tally


def nearest_rank(values: np.ndarray, q: float) -> float:
    return float(np.sort(values)[::-1][int(values.size * (1.0 - q))])


@pytest.mark.parametrize("q", [0.5, 0.9, 0.99, 0.999])
def test_latency_quantiles_are_within_half_a_percent_of_numpys(q: float):
    rng = np.random.default_rng(11)
    values = np.concatenate([rng.lognormal(1.0, 1.2, 20_000), [0.0, 0.0], rng.uniform(0, 1, 50)])
    whole = Latencies()
    whole.add(values)
    assert whole.n == values.size and whole.zeros == 2
    assert whole.quantile(q) == pytest.approx(nearest_rank(values, q), rel=0.005)
    # merged from slices, in any order: the same histogram
    parts = np.array_split(rng.permutation(values), 7)
    merged = Latencies()
    for part in reversed(parts):
        piece = Latencies()
        piece.add(part)
        merged = merged.merged(piece)
    assert merged == whole
    assert Latencies().quantile(q) is None


@pytest.fixture
def canary(rv: relevo.Relevo, churn_pipeline: Pipeline, churn_frame: pd.DataFrame) -> relevo.Relevo:
    rv.registry.register("churn", churn_pipeline, churn_frame, target=CHURN_TARGET)
    rv.registry.register("churn", churn_pipeline, churn_frame, target=CHURN_TARGET)
    rv.deployments.deploy("churn", "churn:1")
    rv.deployments.deploy("churn", "churn:2", strategy="canary", weight=0.2)
    return rv


def _log(rv: relevo.Relevo, at: datetime, latencies: np.ndarray, version: int, role: str) -> None:
    prefix = f"{role}{version}-{at.timestamp():.3f}"
    rv.store.predictions.insert_many(
        [
            (f"{prefix}-{i}", "churn", "churn", version, at, None, "{}", "{}", float(ms), role)
            for i, ms in enumerate(latencies)
        ]
    )


def test_looks_over_time_equal_a_full_count_and_read_settled_rows_once(
    canary: relevo.Relevo, monkeypatch: pytest.MonkeyPatch
):
    rv = canary
    rng = np.random.default_rng(5)
    start = datetime.now(UTC) + timedelta(seconds=1)
    t = Tally("churn", start)
    read: list[int] = []
    logged = rv.store.arms.logged

    def counting(*args: object) -> list[tuple[str, int, str, float]]:
        rows = logged(*args)  # type: ignore[arg-type]
        read.append(len(rows))
        return rows

    monkeypatch.setattr(rv.store.arms, "logged", counting)
    champion, challenger, fallback = [], [], 0
    for step in range(6):  # six stretches of rows, SETTLE_S apart, looked at after each
        at = start + timedelta(seconds=SETTLE_S * step)
        ch, cp = rng.lognormal(1.2, 0.6, 40), rng.lognormal(1.0, 0.5, 160)
        _log(rv, at, cp, 1, "champion")
        _log(rv, at + timedelta(milliseconds=1), ch, 2, "challenger")
        _log(rv, at + timedelta(milliseconds=2), np.ones(step), 1, "fallback")
        champion.append(cp)
        challenger.append(ch)
        fallback += step
        looked = t.look(rv.store, now=at + timedelta(seconds=0.5))
        all_cp, all_ch = np.concatenate(champion), np.concatenate(challenger)
        assert looked[("churn", 1, "champion", None)].rows == all_cp.size
        assert looked[("churn", 2, "challenger", None)].rows == all_ch.size
        assert (looked[("churn", 1, "fallback", None)].rows if fallback else 0) == fallback
        got = looked[("churn", 1, "champion", None)].latencies.quantile(0.99)
        assert got == pytest.approx(nearest_rank(all_cp, 0.99), rel=0.005)
    # the first look read only its recent rows; each later one folded the stretch that settled
    # since (read once) and read its last SETTLE_S seconds: all but the last stretch folded
    assert len(read) == 11
    assert sum(read[1::2]) == 6 * 200 + sum(range(6)) - (200 + 5)
    assert read[2::2] == [200 + step for step in range(1, 6)]


def test_status_and_the_gates_count_every_logged_row(canary: relevo.Relevo):
    rv = canary
    tallies._tallies.clear()
    at = datetime.now(UTC) + timedelta(seconds=1)
    rng = np.random.default_rng(9)
    cp, ch = rng.lognormal(1.0, 0.5, 900), rng.lognormal(1.1, 0.5, 100)
    _log(rv, at, cp, 1, "champion")
    _log(rv, at, ch, 2, "challenger")
    _log(rv, at, np.ones(7), 1, "fallback")
    state = rv.deployments.get("churn")
    found = {a.role: a for a in arms(rv.store, state)}
    assert (found["champion"].rows, found["challenger"].rows) == (900, 107)
    assert found["challenger"].errors == 7
    assert found["challenger"].latency_p99_ms == pytest.approx(nearest_rank(ch, 0.99), rel=0.005)
    stats = rollout_stats(rv.store, state)
    assert (stats.champion.rows, stats.challenger.rows, stats.challenger.errors) == (900, 107, 7)
    # rows logged later are seen at the next look
    _log(rv, at + timedelta(seconds=2), ch[:50], 2, "challenger")
    assert rollout_stats(rv.store, state).challenger.rows == 157
