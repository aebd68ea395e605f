"""Providers of the computational rules: `model_errors` (the share of rows a model failed on),
`latency_p99` (from the logged request latency; a batch run's rows have none) and
`rollout_gate` (a rollback a gate made). Each reads its numbers from the store and hands them
to a pure judgement (`judge_*`). The first two count the rows of the models the deployment
serves now (its champion and challenger): after a swap, the old champion's rows still in the
window are not the new one's doing."""

from __future__ import annotations

from datetime import datetime, timedelta

from relevo.context import Relevo
from relevo.monitoring.alerts.config import rules_of_deployment
from relevo.monitoring.alerts.rules import Rule
from relevo.monitoring.signals import Signal


def span(seconds: float) -> str:
    """A window's length for messages: `5 min`, `30 s`."""
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def judge_errors(deployment: str, rows: int, failed: int, rule: Rule) -> Signal:
    """Fires when more than `max_share` of at least `min_rows` rows failed."""
    limit, minimum = rule.param("max_share"), rule.param("min_rows")
    share = failed / rows if rows else 0.0
    what = f"{failed:,} of {rows:,} rows failed in the last {span(rule.param('window_s'))}"
    what += f" ({share:.1%})"
    if rows < minimum:
        return Signal(deployment, "model_errors", "", False, f"{what}: too few rows to judge",
                      share, limit, evaluable=False)  # fmt: skip
    firing = share > limit
    message = f"{what}, over {limit:.1%}" if firing else what
    return Signal(deployment, "model_errors", "", firing, message, share, limit)


def judge_latency(deployment: str, rows: int, p99: float | None, rule: Rule) -> Signal:
    """Fires when the p99 latency of at least `min_rows` rows is over `threshold_ms`."""
    limit = rule.param("threshold_ms")
    window = span(rule.param("window_s"))
    if p99 is None or rows < rule.param("min_rows"):
        return Signal(deployment, "latency_p99", "", False,
                      f"{rows:,} rows in the last {window}: too few to judge", p99, limit,
                      evaluable=False)  # fmt: skip
    firing = p99 > limit
    message = f"p99 latency {p99:.1f} ms over {rows:,} rows in the last {window}"
    message += f", over {limit:g} ms" if firing else ""
    return Signal(deployment, "latency_p99", "", firing, message, p99, limit)


def model_errors(rv: Relevo, deployment: str, now: datetime) -> list[Signal]:
    """Rows a model failed on (a canary challenger's failures, answered by the champion and
    logged as `fallback`) over the rows answered in the window, of the models the deployment
    serves now (not an old champion's nor a withdrawn challenger's)."""
    rule = rules_of_deployment(rv, deployment)["model_errors"]
    if not rule.enabled:
        return []
    since = now - timedelta(seconds=rule.param("window_s"))
    models = rv.deployments.get(deployment).models
    rows, failed = rv.store.alerts.logged_failures(deployment, since, now, models)
    return [judge_errors(deployment, rows, failed, rule)]


def latency_p99(rv: Relevo, deployment: str, now: datetime) -> list[Signal]:
    """The p99 of the logged request latency over the window against `threshold_ms`, of the
    rows the models the deployment serves now answered (a batch run's rows carry their
    chunk's model call, no request's latency: left out)."""
    rule = rules_of_deployment(rv, deployment)["latency_p99"]
    if not rule.enabled:
        return []
    since = now - timedelta(seconds=rule.param("window_s"))
    models = rv.deployments.get(deployment).models
    rows, p99 = rv.store.alerts.latency_quantile(deployment, since, now, models)
    return [judge_latency(deployment, rows, p99, rule)]


def rollout_gate(rv: Relevo, deployment: str, now: datetime) -> list[Signal]:
    """Fires while a rollback made by a rollout gate is more recent than `window_s`."""
    rule = rules_of_deployment(rv, deployment)["rollout_gate"]
    if not rule.enabled:
        return []
    since = now - timedelta(seconds=rule.param("window_s"))
    found = rv.store.alerts.gate_rollbacks(deployment, since)
    if not found:
        return [Signal(deployment, "rollout_gate", "", False, "no gate rolled back recently")]
    when, why = found[-1]
    message = f"a gate rolled back at {when:%Y-%m-%d %H:%M:%S} UTC: {why}"
    return [Signal(deployment, "rollout_gate", "", True, message, float(len(found)), None)]
