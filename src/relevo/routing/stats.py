"""A deployment's live numbers per model, gathered from the prediction log in the store.

The gates compare a challenger with its champion over the rows each answered since the
challenger was deployed (and, for a rollout step's minimum, since the step began). Every replica
logs to the same store, so the numbers are the fleet's whichever replica looks. A challenger's
failures are its rows logged with the role `fallback`: the champion answered them instead, so
they count as rows of the challenger (it was given them) and as its errors: of the challenger
that failed on them, which each names, so a challenger deployed over a failing one is not
charged with the rows the old one failed on after it was replaced (a replica that had not
applied the deploy yet, a call or batch run still under way); a fallback row stored before the
log named its challenger (migration 0010) counts for the current one. A batch run's rows
count as rows (and errors) too, but their latency is no request's: each model's p99 is over the
rows it answered to requests (`latency_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from relevo.routing import tally as tallies
from relevo.routing.deployment import Deployment
from relevo.routing.gates import ArmStats, RolloutStats, matched_quantile
from relevo.routing.tally import Key
from relevo.store import Store

FALLBACK = "fallback"

#: the alert rules whose firing during the bake period after a promotion rolls it back
#: (errors, latency, drift, data quality: what a new champion can cause)
BAKE_RULES = frozenset(
    {
        "model_errors",
        "latency_p99",
        "feature_drift",
        "dataset_drift",
        "prediction_drift",
        "multivariate_drift",
        "data_quality",
        "degenerate_output",
    }
)


@dataclass(frozen=True)
class Arm:
    """One model's numbers in a deployment, as `relevo status` shows them."""

    role: str
    model: str
    rows: int
    errors: int
    latency_p99_ms: float | None
    #: the rows the p99 is over: those the model answered to requests (not a batch run's)
    latency_rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        rate = self.errors / self.rows if self.rows else None
        return {
            "role": self.role,
            "model": self.model,
            "rows": self.rows,
            "errors": self.errors,
            "error_rate": rate,
            "latency_p99_ms": self.latency_p99_ms,
            "latency_rows": self.latency_rows,
        }


def challenger_since(store: Store, state: Deployment) -> datetime | None:
    """When the current challenger was deployed (its last `deploy` event), or None."""
    if not state.has_challenger:
        return None
    for event in reversed(store.deployments.history(state.name)):
        if event.action == "deploy":
            return event.created_at
    return state.step_started_at


def _look(store: Store, state: Deployment, since: datetime | None) -> dict[Key, tallies.Arm]:
    """Every (model, role)'s rows and latencies logged for the deployment since `since`."""
    return tallies.tally(store, state.name, since).look(store)


def _rows(looked: dict[Key, tallies.Arm], model: str, version: int, role: str) -> int:
    found = looked.get((model, version, role, None))
    return 0 if found is None else found.rows


def _failed(looked: dict[Key, tallies.Arm], state: Deployment) -> int:
    """The rows the current challenger failed on (the champion's `fallback` rows naming it,
    and those naming none: logged before the log named a fallback row's challenger)."""
    name, version = state.model_name, state.model_version
    return sum(
        found.rows
        for challenger in {None, state.challenger_ref}
        if (found := looked.get((name, version, FALLBACK, challenger))) is not None
    )


def _quantile(
    looked: dict[Key, tallies.Arm], model: str, version: int, role: str, q: float = 0.99
) -> float | None:
    found = looked.get((model, version, role, None))
    return None if found is None else found.latencies.quantile(q)


def _timed(looked: dict[Key, tallies.Arm], model: str, version: int, role: str) -> int:
    """The rows with a request's latency (a batch run's have none)."""
    found = looked.get((model, version, role, None))
    return 0 if found is None else found.latencies.n


def arms(store: Store, state: Deployment, since: datetime | None = None) -> list[Arm]:
    """The champion's and (if any) the challenger's numbers since `since` (default: since the
    challenger was deployed, or all time without one)."""
    since = since if since is not None else challenger_since(store, state)
    return _arms(state, _look(store, state, since))


def _arms(state: Deployment, looked: dict[Key, tallies.Arm]) -> list[Arm]:
    name, version = state.model_name, state.model_version
    out = [
        Arm(
            "champion",
            state.model_ref,
            _rows(looked, name, version, "champion"),
            0,  # a champion's failure is the caller's error response, never logged as a row
            _quantile(looked, name, version, "champion"),
            _timed(looked, name, version, "champion"),
        )
    ]
    if state.has_challenger and state.strategy == "canary":
        ref = state.challenger_ref
        assert ref is not None and state.challenger_name and state.challenger_version
        failed = _failed(looked, state)
        ch_name, ch_version = state.challenger_name, state.challenger_version
        out.append(
            Arm(
                "challenger",
                ref,
                _rows(looked, ch_name, ch_version, "challenger") + failed,
                failed,
                _quantile(looked, ch_name, ch_version, "challenger"),
                _timed(looked, ch_name, ch_version, "challenger"),
            )
        )
    return out


def rollout_stats(store: Store, state: Deployment, since: datetime | None = None) -> RolloutStats:
    """What the gates need: both arms since the challenger was deployed, and the challenger's
    rows since the current step began."""
    since = since if since is not None else challenger_since(store, state)
    looked = _look(store, state, since)
    found = _arms(state, looked)
    champion = found[0]
    challenger = found[1] if len(found) > 1 else Arm("challenger", "", 0, 0, None)
    step_rows = challenger.rows
    if state.step_started_at is not None and state.progressive:
        step = _look(store, state, state.step_started_at)
        step_rows = _failed(step, state)
        if state.challenger_name is not None and state.challenger_version is not None:
            step_rows += _rows(step, state.challenger_name, state.challenger_version, "challenger")
    # the challenger's p99 is over the rows it answered itself to requests (its failures were
    # answered by the champion; a batch run's rows carry no request's latency): the champion's
    # latency at the quantile matched to that many rows
    matched = None
    answered = challenger.latency_rows
    if answered > 0 and challenger.latency_p99_ms is not None and champion.latency_rows:
        matched = _quantile(
            looked, state.model_name, state.model_version, "champion", matched_quantile(answered)
        )
    return RolloutStats(
        champion=ArmStats(
            champion.rows, champion.errors, champion.latency_p99_ms, champion.latency_rows
        ),
        challenger=ArmStats(
            challenger.rows, challenger.errors, challenger.latency_p99_ms, challenger.latency_rows
        ),
        step_rows=step_rows,
        champion_latency_matched_ms=matched,
    )


def bake_alerts(store: Store, state: Deployment) -> tuple[str, ...]:
    """The deployment's alerts of `BAKE_RULES` that fire now and started after its last
    promotion (an alert older than the new champion is not its doing), as
    "rule[subject]: message" for the audit trail."""
    if state.promoted_at is None:
        return ()
    return tuple(
        f"{a.rule}{f'[{a.subject}]' if a.subject else ''}: {a.message}"
        for a in store.alerts.list(state.name)
        if a.rule in BAKE_RULES and a.started_at >= state.promoted_at
    )


def shadow_comparison(store: Store, state: Deployment) -> dict[str, Any] | None:
    """How a shadow challenger's outputs compare with the champion's on the same rows (the
    latest 100,000 since it was deployed): rows compared, label agreement, the distribution of
    the absolute probability difference (multiclass: the largest over the classes) and of the
    absolute value difference (regression), both latencies and error rates. None without a
    shadow."""
    if state.strategy != "shadow" or not state.has_challenger:
        return None
    assert state.challenger_name is not None and state.challenger_version is not None
    since = challenger_since(store, state)
    pairs = store.shadows.pairs(state.name, state.challenger_name, state.challenger_version, since)
    failed = sum(p.error is not None for p in pairs)
    both = [
        (orjson.loads(p.champion), orjson.loads(p.shadow), p)
        for p in pairs
        if p.champion is not None and p.shadow is not None
    ]
    # the two models need not share a task (any registered model may shadow): each measure
    # takes the rows where both outputs carry it
    # (a NaN output is stored as null: such a row counts for no difference)
    labels = [a["label"] == b["label"] for a, b, _ in both if "label" in a and "label" in b]
    diffs = np.array([d for a, b, _ in both if (d := _probability_difference(a, b)) is not None])
    values = np.array(
        [d for a, b, _ in both if (d := _gap(a.get("value"), b.get("value"))) is not None]
    )
    champion_ms = np.array([p.champion_latency_ms for _, _, p in both])
    # the shadow's latency over the rows it scored: a row it failed on (refused before any
    # model call: 0 ms) says nothing of its speed (and with the log off no row is compared)
    shadow_ms = np.array([p.shadow_latency_ms for p in pairs if p.error is None])
    return {
        "model": state.challenger_ref,
        "rows": len(pairs),
        "rows_compared": len(both),
        "label_agreement": float(np.mean(labels)) if labels else None,
        "probability_difference": _spread(diffs),
        "value_difference": _spread(values),
        "champion_latency_ms": _spread(champion_ms),
        "shadow_latency_ms": _spread(shadow_ms),
        "champion_error_rate": 0.0 if pairs else None,
        "shadow_errors": failed,
        "shadow_error_rate": failed / len(pairs) if pairs else None,
    }


def _probability_difference(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    """How far two outputs' probabilities are apart: binary, |P(positive) - P(positive)|;
    multiclass, the largest difference over the classes (a class one model does not know has
    probability 0 there); None when the two do not both carry probabilities."""
    if "probability" in a or "probability" in b:
        return _gap(a.get("probability"), b.get("probability"))
    pa, pb = a.get("probabilities"), b.get("probabilities")
    if isinstance(pa, dict) and isinstance(pb, dict) and pa and pb:
        gaps = [_gap(pa.get(c, 0.0), pb.get(c, 0.0)) for c in pa.keys() | pb.keys()]
        return None if None in gaps else max(g for g in gaps if g is not None)
    return None


def _gap(a: Any, b: Any) -> float | None:
    """|a - b| of two numbers; None when either is missing (null: a NaN output)."""
    if type(a) not in (int, float) or type(b) not in (int, float):
        return None
    return float(abs(a - b))


def _spread(values: np.ndarray) -> dict[str, float] | None:
    if values.size == 0:
        return None
    return {
        "mean": float(values.mean()),
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "max": float(values.max()),
    }
