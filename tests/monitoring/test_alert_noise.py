"""Alert noise: a day of one-minute evaluations on undrifted synthetic traffic stays within the
false-alarm rate docs/alerts.md states for the defaults; the same day with the traffic cut off
for half an hour raises exactly one incident, notified once when it opens and once when it
clears."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
from scipy import stats

from relevo.monitoring.alerts import engine
from relevo.monitoring.alerts.health import judge_errors, judge_latency
from relevo.monitoring.alerts.rules import rules_for
from relevo.monitoring.alerts.volume import Volumes, judge
from relevo.monitoring.signals import Signal

DAY = 1440
HISTORY_DAYS = 7
WINDOW = 5  # minutes, the default window_s of 300
TRAILING = 12
FEATURES = 20
#: the documented bound: false incidents per deployment per day from the defaults
STATED_RATE = 0.05
START = datetime(2026, 11, 30, tzinfo=UTC)


def rate_per_minute(minute_of_day: np.ndarray, peak: float) -> np.ndarray:
    """Business traffic: nothing from 22:00 to 06:00, a smooth hump by day."""
    hour = (minute_of_day / 60.0) % 24
    hump = np.clip(np.sin((hour - 6) / 16 * np.pi), 0, None)
    return np.where((hour >= 6) & (hour < 22), peak * (0.2 + 0.8 * hump), 0.0)


def simulate(seed: int, outage: range | None = None, peak: float = 40.0) -> list[Signal]:
    """The signals of one deployment over one day, evaluated every minute, from synthetic
    per-minute traffic over the day and the seven before it (two replicas)."""
    rng = np.random.default_rng(seed)
    minutes = np.arange((HISTORY_DAYS + 1) * DAY)
    lam = rate_per_minute(minutes, peak)
    counts = rng.poisson(np.repeat(lam[:, None] / 2, 2, axis=1))  # (minute, replica)
    if outage is not None:
        counts[HISTORY_DAYS * DAY + np.array(list(outage))] = 0
    failed = rng.binomial(counts.sum(axis=1), 0.01)  # a healthy 1 % failure rate
    rules = rules_for(None)
    deployment = f"d{seed}"
    out: list[list[Signal]] = []
    for t in range(HISTORY_DAYS * DAY, (HISTORY_DAYS + 1) * DAY):

        def window(end: int) -> dict[str, int]:
            c = counts[max(end - WINDOW, 0) : end].sum(axis=0)
            return {"a": int(c[0]), "b": int(c[1])}

        volumes = Volumes(
            current=window(t),
            seasonal=[window(t - d * DAY) for d in range(1, HISTORY_DAYS + 1)],
            trailing=[window(t - i * WINDOW) for i in range(1, TRAILING + 1)],
        )
        signals = judge(deployment, volumes, alpha=1e-4, window_s=300)
        rows = int(counts[t - WINDOW : t].sum())
        signals.append(
            judge_errors(deployment, rows, int(failed[t - WINDOW : t].sum()), rules["model_errors"])
        )
        latencies = rng.lognormal(np.log(20.0), 0.5, size=rows)
        p99 = float(np.quantile(latencies, 0.99, method="higher")) if rows else None
        signals.append(judge_latency(deployment, rows, p99, rules["latency_p99"]))
        # an undrifted stand-in for the drift provider: a valid test's p-values are uniform
        # when nothing drifted; one test per feature, Bonferroni-corrected over them at 5 %
        for f, p in enumerate(rng.uniform(size=FEATURES)):
            signals.append(
                Signal(
                    deployment,
                    "feature_drift",
                    f"x{f}",
                    p < 0.05 / FEATURES,
                    f"KS p={p:.3g}",
                    p,
                    0.05 / FEATURES,
                )
            )
        out.append(signals)
    return out  # type: ignore[return-value]


def run_day(per_minute: list[list[list[Signal]]]):
    """Feed the engine minute by minute; the notifications it sends."""
    tracks: dict = {}
    open_alerts: dict = {}
    notes = []
    counter = itertools.count()
    rules = rules_for(None)
    for minute in range(DAY):
        now = START + timedelta(minutes=minute)
        signals = [s for deployment in per_minute for s in deployment[minute]]
        outcome = engine.step(
            signals, tracks, open_alerts, lambda _d: rules, [], now, lambda: f"i{next(counter)}"
        )
        tracks.update({t.key: t for t in outcome.tracks})
        for a in outcome.alerts:
            if a.firing:
                open_alerts[a.key] = a
            else:
                open_alerts.pop(a.key, None)
        notes.extend(outcome.notifications)
    return notes


def test_a_day_of_undrifted_traffic_stays_within_the_stated_false_alarm_rate():
    deployments = 10
    notes = run_day([simulate(seed) for seed in range(deployments)])
    incidents = {n.incident for n in notes if n.kind == "firing"}
    # the stated rate (0.05 a day) over 10 deployment-days is 0.5 expected incidents; a
    # Poisson count at that mean stays at or under 2 with probability 0.986
    assert len(incidents) <= stats.poisson.ppf(0.986, STATED_RATE * deployments)
    assert len(incidents) <= 2


def test_traffic_that_stops_at_midday_raises_one_incident_that_clears():
    outage = range(12 * 60, 12 * 60 + 30)  # 12:00 to 12:30, in the busy hours
    notes = run_day([simulate(7, outage=outage)])
    kinds = [(n.kind, n.alerts[0].rule, n.alerts[0].subject) for n in notes]
    assert kinds == [("firing", "no_predictions", ""), ("resolved", "no_predictions", "")]
    fired, cleared = notes
    assert fired.incident == cleared.incident
    # it fires once a whole window is empty, at the second such evaluation (2 of 3), and
    # clears at the first evaluation that sees rows again
    stopped = START + timedelta(minutes=outage.start)
    assert fired.at - stopped == timedelta(minutes=WINDOW + 1)
    assert cleared.at - (START + timedelta(minutes=outage.stop)) == timedelta(minutes=1)


def test_the_quiet_night_does_not_fire():
    """No rows from 22:00 to 06:00, every day: history expects nothing, nothing fires."""
    day = simulate(3)
    night = [s for minute in day[: 6 * 60] for s in minute if s.rule == "no_predictions"]
    assert night and not any(s.firing for s in night)
    assert all(s.evaluable for s in night if s.subject == "")
