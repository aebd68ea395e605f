"""Rollout gates: checks on a challenger's live numbers that answer pass, fail or inconclusive.

Gates are looked at continuously (every few seconds) while a canary runs, so a plain threshold
on an error rate would, sooner or later, roll back a perfectly good challenger by chance. The
error-rate gate therefore uses Wald's sequential probability ratio test (SPRT), whose evidence
may be looked at after every row without inflating its error:

- H0: the challenger's error rate is at most p0 = (the champion's rate, plus twice its standard
  error) + `tolerance`; H1: it is p1 = p0 + `effect`.
- After n challenger rows with e errors, the log likelihood ratio is
  `e*ln(p1/p0) + (n-e)*ln((1-p1)/(1-p0))`. The gate fails when it reaches ln(1/alpha). Under H0
  the likelihood ratio is a nonnegative supermartingale, so by Ville's inequality the chance it
  *ever* reaches 1/alpha, however often it is looked at, is at most alpha (1 % by default):
  that is the false-rollback rate for an equal challenger.
- It passes once it falls to ln(beta/(1-alpha)) with at least `min_rows` challenger rows;
  in between (or with fewer rows) it is inconclusive, which holds a step and never rolls back.

The latency gate compares p99s only once both models have `min_rows` rows (a fixed minimum
sample) and with a generous margin (`ratio` and `slack_ms`). The two p99s are not estimated
from samples of the same size: a challenger at a 5 % weight has a twentieth of the champion's
rows, and the p99 of few rows is the more extreme (500 rows: their 6th largest). Compared with
the champion's p99, a challenger with exactly the champion's latencies would fail by chance
whenever a few slow moments fall on its rows. So the challenger's p99 over n rows is compared
with the champion's latency at the quantile `matched_quantile(n)`: the one that the p99 of n
rows drawn from the champion's own latencies exceeds with probability `alpha` (1 %) at most.
That follows from order statistics alone (no assumption on the distribution): the p99 of n rows
(nearest rank, its `int(0.01 n) + 1`-th largest) exceeds the champion's quantile 1 - p exactly
when `int(0.01 n) + 1` or more of the n rows do, a binomial tail in p. It tends to the p99 as n
grows (500 rows: 0.9964; 5,000: 0.9928; 100,000: 0.9907).
The drift gate reads the challenger's prediction drift against its own reference, which the
evaluator measures from the prediction log (`relevo.monitoring.rollout_drift`); the label gate
reads a label metric of both models on the same matured rows (the feedback layer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, Protocol

from relevo.routing.deployment import Deployment

#: the chance that the latency gate fails a challenger as fast as its champion
LATENCY_ALPHA = 0.01

Verdict = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class ArmStats:
    """One model's numbers since the challenger was deployed: rows answered (or, for a shadow,
    scored), rows that failed, the p99 latency of the rows it answered to requests, and how
    many those are (None: every row it answered itself, `rows - errors`; a batch run's rows
    carry no request's latency)."""

    rows: int = 0
    errors: int = 0
    latency_p99_ms: float | None = None
    latency_rows: int | None = None

    @property
    def error_rate(self) -> float:
        return self.errors / self.rows if self.rows else 0.0

    @property
    def timed_rows(self) -> int:
        """The rows the p99 is over."""
        return self.rows - self.errors if self.latency_rows is None else self.latency_rows


@dataclass(frozen=True)
class Measurement:
    """A value measured over a number of rows (or labels), e.g. a drift score."""

    value: float
    rows: int


@dataclass(frozen=True)
class RolloutStats:
    """What the evaluator knows about a deployment when it looks.

    Counts are cumulative since the challenger was deployed (`champion` and `challenger`),
    except `step_rows`: the challenger's rows since the current step began. `alerts` are the
    deployment's firing alerts (errors, latency, drift, data quality) from monitoring.
    """

    champion: ArmStats = ArmStats()
    challenger: ArmStats = ArmStats()
    step_rows: int = 0
    alerts: tuple[str, ...] = ()
    #: the challenger's prediction drift against its own reference (e.g. PSI)
    drift: Measurement | None = None
    #: a label-based metric of (champion, challenger) on the same matured rows
    label_metric: tuple[Measurement, Measurement] | None = None
    #: the champion's latency at `matched_quantile(challenger rows)`: what the latency gate
    #: compares the challenger's p99 with (None: the champion's p99)
    champion_latency_matched_ms: float | None = None


@lru_cache(maxsize=4096)
def matched_quantile(rows: int, q: float = 0.99, alpha: float = LATENCY_ALPHA) -> float:
    """The quantile of a reference distribution that the nearest-rank `q` quantile of `rows`
    values drawn from that same distribution exceeds with probability `alpha` (see above).

    With k = int(rows * (1 - q)) + 1, the sample quantile exceeds the reference's quantile
    1 - p when k or more of the rows do: P(Binomial(rows, p) >= k) = I_p(k, rows - k + 1), the
    regularized incomplete beta function, so p is its `alpha` quantile."""
    from scipy.special import betaincinv  # a light import, only where gates are evaluated

    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    k = int(rows * (1.0 - q)) + 1
    return float(1.0 - betaincinv(k, rows - k + 1, alpha))


@dataclass(frozen=True)
class GateResult:
    gate: str
    verdict: Verdict
    detail: str
    value: float | None = None
    threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "verdict": self.verdict,
            "detail": self.detail,
            "value": self.value,
            "threshold": self.threshold,
        }


class Gate(Protocol):
    """A check of the challenger; `name` identifies it in results and the audit trail."""

    @property
    def name(self) -> str: ...

    def check(self, state: Deployment, stats: RolloutStats) -> GateResult: ...


@dataclass(frozen=True)
class ErrorRateGate:
    """The challenger's error rate against the champion's, by a sequential test (see above)."""

    tolerance: float = 0.01
    effect: float = 0.05
    alpha: float = 0.01
    beta: float = 0.05
    min_rows: int = 200
    name: str = "error_rate"

    def bounds(self, champion: ArmStats) -> tuple[float, float]:
        """(p0, p1): the tolerated error rate and the one the test is tuned to catch."""
        # the champion's rate, smoothed (no division by zero, no zero rate from few rows) and
        # raised by two standard errors so its own noise does not count against the challenger
        base = (champion.errors + 1) / (champion.rows + 2)
        base += 2 * math.sqrt(base * (1 - base) / (champion.rows + 2))
        p0 = min(base + self.tolerance, 0.5)
        return p0, min(p0 + self.effect, 0.99)

    def log_likelihood_ratio(self, champion: ArmStats, challenger: ArmStats) -> float:
        p0, p1 = self.bounds(champion)
        e, n = challenger.errors, challenger.rows
        return e * math.log(p1 / p0) + (n - e) * math.log((1 - p1) / (1 - p0))

    def check(self, state: Deployment, stats: RolloutStats) -> GateResult:
        ch = stats.challenger
        p0, _p1 = self.bounds(stats.champion)
        llr = self.log_likelihood_ratio(stats.champion, ch)
        upper = math.log(1 / self.alpha)
        lower = math.log(self.beta / (1 - self.alpha))
        seen = f"{ch.errors} errors in {ch.rows} rows ({ch.error_rate:.2%}), tolerated {p0:.2%}"
        if llr >= upper:
            return GateResult(self.name, "fail", f"{seen}: too many", ch.error_rate, p0)
        if llr <= lower and ch.rows >= self.min_rows:
            return GateResult(self.name, "pass", seen, ch.error_rate, p0)
        wait = "too few rows" if ch.rows < self.min_rows else "not yet conclusive"
        return GateResult(self.name, "inconclusive", f"{seen}: {wait}", ch.error_rate, p0)


@dataclass(frozen=True)
class LatencyGate:
    """The challenger's p99 latency must stay under `ratio` x the champion's latency at the
    quantile matched to the challenger's row count (see above) + `slack_ms`. Both are over the
    rows answered to requests: a batch run's rows count for the other gates, not here."""

    ratio: float = 1.5
    slack_ms: float = 5.0
    min_rows: int = 500
    name: str = "latency_p99"

    def check(self, state: Deployment, stats: RolloutStats) -> GateResult:
        ch, champ = stats.challenger, stats.champion
        # the rows with a request's latency (a batch run's rows have none)
        ch_n = ch.rows if ch.latency_rows is None else ch.latency_rows
        champ_n = champ.rows if champ.latency_rows is None else champ.latency_rows
        if (
            ch_n < self.min_rows
            or champ_n < self.min_rows
            or ch.latency_p99_ms is None
            or champ.latency_p99_ms is None
        ):
            detail = f"too few rows ({ch_n} and {champ_n}, {self.min_rows} each needed)"
            if ch_n < ch.rows - ch.errors or champ_n < champ.rows - champ.errors:
                detail += "; a batch run's rows carry no request latency"
            return GateResult(self.name, "inconclusive", detail, ch.latency_p99_ms)
        matched = stats.champion_latency_matched_ms
        base = champ.latency_p99_ms if matched is None else matched
        bound = base * self.ratio + self.slack_ms
        detail = f"p99 {ch.latency_p99_ms:.1f} ms over {ch_n} rows against {base:.1f} ms"
        if matched is not None:
            detail += f" (the champion's q{100 * matched_quantile(ch.timed_rows):.2f}, matched)"
        verdict: Verdict = "fail" if ch.latency_p99_ms > bound else "pass"
        return GateResult(self.name, verdict, detail, ch.latency_p99_ms, bound)


@dataclass(frozen=True)
class DriftGate:
    """The challenger's prediction drift against its own reference stays under `threshold`
    (not against the champion: a better model is meant to predict differently)."""

    threshold: float = 0.2
    #: the sample it needs, or the step's minimum rows when that is smaller (a step never waits
    #: on this gate longer than on its own minimum)
    min_rows: int = 500
    name: str = "drift"

    def check(self, state: Deployment, stats: RolloutStats) -> GateResult:
        m = stats.drift
        need = max(1, min(self.min_rows, state.min_step_rows))
        if m is None or m.rows < need:
            rows = 0 if m is None else m.rows
            return GateResult(self.name, "inconclusive", f"drift over {rows} rows: {need} needed")
        bound = self.bound(m.rows)
        verdict: Verdict = "fail" if m.value > bound else "pass"
        detail = f"drift {m.value:.3f} over {m.rows} rows"
        if bound > self.threshold:
            detail += f" (at most {bound:.3f} over so few rows)"
        return GateResult(self.name, verdict, detail, m.value, bound)

    def bound(self, rows: int) -> float:
        """The drift that fails over `rows` rows: `threshold` from `min_rows` on. Fewer rows (a
        step's minimum may be smaller) scatter more: an empirical distance's noise shrinks as
        1/sqrt(rows), so the bound is widened by sqrt(min_rows / rows), which keeps an equal
        challenger's chance of failing about what it is at `min_rows` (at 50 rows, a fixed 0.2
        failed one in four or more)."""
        if rows >= self.min_rows:
            return self.threshold
        return self.threshold * math.sqrt(self.min_rows / max(rows, 1))


@dataclass(frozen=True)
class LabelMetricGate:
    """The challenger's label metric (e.g. AUC) is not worse than the champion's by more than
    `tolerance`, once both have `min_labels` matured labels."""

    tolerance: float = 0.02
    higher_is_better: bool = True
    min_labels: int = 200
    name: str = "label_metric"

    def check(self, state: Deployment, stats: RolloutStats) -> GateResult:
        pair = stats.label_metric
        if pair is None or min(pair[0].rows, pair[1].rows) < self.min_labels:
            # labels take days: until enough have matured the gate is not checked, and a step
            # is not held for it (it is checked, and can fail, at any later look)
            return GateResult(self.name, "pass", "not checked yet: too few matured labels")
        champ, ch = pair
        loss = (champ.value - ch.value) if self.higher_is_better else (ch.value - champ.value)
        verdict: Verdict = "fail" if loss > self.tolerance else "pass"
        detail = f"{ch.value:.4f} against the champion's {champ.value:.4f} ({ch.rows} labels)"
        return GateResult(self.name, verdict, detail, ch.value, champ.value)


def default_gates() -> list[Gate]:
    """The gates every canary is watched by: errors, latency, the challenger's prediction
    drift against its own reference, and a label metric once labels have matured."""
    return [ErrorRateGate(), LatencyGate(), DriftGate(), LabelMetricGate()]


def check_all(gates: Sequence[Gate], state: Deployment, stats: RolloutStats) -> list[GateResult]:
    return [gate.check(state, stats) for gate in gates]
