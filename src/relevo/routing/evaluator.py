"""The rollout evaluator: inside a server, about once a second, one replica at a time (it holds
the store's `rollout-evaluator` lease) checks the gates of every deployment with a challenger
against the numbers in the prediction log and acts: rolls a failing challenger back, advances
a passing rollout, or holds. During the bake period after a promotion, a firing alert of the
deployment (errors, latency, drift, data quality) rolls back to the previous champion.
Transport-free; the server starts `run` in its lifespan.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from relevo.context import Relevo
from relevo.feedback.service import label_metric
from relevo.monitoring.rollout_drift import challenger_drift
from relevo.routing.deployment import Deployment
from relevo.routing.gates import Measurement, RolloutStats
from relevo.routing.rollout import Decision
from relevo.routing.service import Evaluation
from relevo.routing.stats import bake_alerts, rollout_stats

log = logging.getLogger(__name__)


def holder_id() -> str:
    """This process's name on the lease: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def evaluate_once(rv: Relevo, holder: str, ttl_s: float) -> dict[str, Evaluation]:
    """Take (or renew) the lease and evaluate every deployment with a challenger; nothing when
    another replica holds the lease. Returns the evaluations, by deployment."""
    service = rv.deployments
    if not service.acquire_evaluator(holder, ttl_s):
        return {}
    out: dict[str, Evaluation] = {}
    now = datetime.now(UTC)
    for dep in service.list():
        try:
            evaluation = _evaluate(rv, dep, now)
        except Exception:  # one deployment's failure must not stop the others' gates
            log.exception("evaluating the rollout of deployment %r failed", dep.name)
            continue
        if evaluation is None:
            continue
        out[dep.name] = evaluation
        if evaluation.changed:
            decision = evaluation.decision
            level = logging.WARNING if decision.move == "rollback" else logging.INFO
            log.log(level, "deployment %r: %s (%s)", dep.name, decision.move, decision.reason)
    return out


def _evaluate(rv: Relevo, dep: Deployment, now: datetime) -> Evaluation | None:
    """The gates' look at one deployment, decided on the numbers of this very state (`dep`):
    if it changed since it was read (a user's deploy, another replica's move), nothing is
    done this time."""
    if dep.has_challenger:
        stats = gate_stats(rv, dep)
    elif dep.baking(now):
        # after a promotion: a firing alert of the deployment rolls back (issue 14)
        stats = RolloutStats(alerts=bake_alerts(rv.store, dep))
        if not stats.alerts:
            return None
    else:
        return None
    return rv.deployments.evaluate(dep.name, stats, state=dep)


def gate_stats(rv: Relevo, dep: Deployment) -> RolloutStats:
    """The numbers the gates judge `dep`'s challenger on: rows, errors and latency per model
    from the prediction log, the challenger's prediction drift and both label metrics."""
    return replace(
        rollout_stats(rv.store, dep), drift=_drift(rv, dep), label_metric=_label_metric(rv, dep)
    )


def current_decision(rv: Relevo, dep: Deployment) -> Decision | None:
    """What the gates say about `dep` now, without acting (`relevo status` shows it: why a
    rollout holds); during the bake period after a promotion, that it bakes and until when
    (or the alert that rolls it back); None without a challenger outside a bake, or when its
    numbers cannot be read now."""
    if not dep.has_challenger and not dep.baking(datetime.now(UTC)):
        return None
    try:
        if dep.has_challenger:
            stats = gate_stats(rv, dep)
        else:
            stats = RolloutStats(alerts=bake_alerts(rv.store, dep))
        decision = rv.deployments.decide(dep.name, stats, state=dep)
    except Exception as exc:  # a status must not fail for a number it cannot read now
        log.warning("reading the gates of deployment %r failed: %s", dep.name, exc)
        return None
    if dep.strategy == "shadow":
        # the error, latency and drift gates read the rows a challenger answered, which a
        # shadow never does: shown, they said "0 errors in 0 rows" of a shadow scoring every row
        kept = tuple(r for r in decision.results if r.gate in SHADOW_GATES)
        decision = replace(decision, results=kept)
    return decision


#: the gates that measure a shadow challenger (its labelled rows): the others read the rows a
#: canary's challenger answers
SHADOW_GATES = frozenset({"label_metric"})


#: the drift gate's measurement (the challenger's latest 5,000 outputs read, parsed and
#: profiled: ~55 ms a look) is read at most this often; drift moves slowly, errors are what a
#: look each second is for
DRIFT_EVERY_S = 5.0
#: labels arrive over hours and days: the label gate's numbers are read at most this often
LABEL_METRIC_EVERY_S = 30.0
_drift_cache: dict[tuple[object, ...], tuple[float, Any]] = {}
_label_cache: dict[tuple[object, ...], tuple[float, Any]] = {}


def _every(
    cache: dict[tuple[object, ...], tuple[float, Any]],
    seconds: float,
    rv: Relevo,
    dep: Deployment,
    compute: Callable[[], Any],
) -> Any:
    """`compute()`, read again at most every `seconds` per deployment revision."""
    key = (rv.store.url, id(rv.store), dep.name, dep.revision, dep.updated_at)
    now = time.monotonic()
    found = cache.get(key)
    if found is not None and now - found[0] < seconds:
        return found[1]
    value = compute()
    if len(cache) > 1000:
        cache.clear()
    cache[key] = (now, value)
    return value


def _drift(rv: Relevo, dep: Deployment) -> Measurement | None:
    """`challenger_drift`, read at most every `DRIFT_EVERY_S`."""
    found: Measurement | None = _every(
        _drift_cache, DRIFT_EVERY_S, rv, dep, lambda: challenger_drift(rv, dep)
    )
    return found


def _label_metric(rv: Relevo, dep: Deployment) -> tuple[Measurement, Measurement] | None:
    """Both models' label metric on their matured labelled rows (the feedback layer), read at
    most every `LABEL_METRIC_EVERY_S`."""

    def compute() -> tuple[Measurement, Measurement] | None:
        try:
            return label_metric(rv, dep)
        except Exception as exc:  # no labels table yet, a model without classes: not a reason
            log.debug("the label metric of %r is unavailable: %s", dep.name, exc)
            return None

    found: tuple[Measurement, Measurement] | None = _every(
        _label_cache, LABEL_METRIC_EVERY_S, rv, dep, compute
    )
    return found


async def run(rv: Relevo, interval_s: float, on_change: Callable[[], object] | None = None) -> None:
    """Evaluate every `interval_s` seconds until cancelled; `on_change` (the pool's refresh)
    runs after a move so this replica follows at once."""
    holder = holder_id()
    ttl = max(5.0, 5 * interval_s)  # a few missed looks before another replica takes over
    try:
        while True:
            await asyncio.sleep(interval_s)
            try:
                found = await asyncio.to_thread(evaluate_once, rv, holder, ttl)
                if on_change is not None and any(e.changed for e in found.values()):
                    await asyncio.to_thread(on_change)
            except Exception as exc:  # a database hiccup must not end the evaluator
                log.warning("evaluating rollouts failed: %s", exc)
    finally:
        await release_lease(lambda: rv.deployments.release_evaluator(holder), "rollout")


#: how long a stopping server waits for a lease's release: in a database outage the release
#: waits on the database's own timeouts (30 s on a locked SQLite file), which held the stop
#: past a pod's grace period; the lease expires by itself `ttl` after the last renewal anyway
RELEASE_WAIT_S = 2.0


async def release_lease(release: Callable[[], object], what: str) -> None:
    """Run `release` in a daemon thread of its own (not asyncio's pool, which the event loop
    joins when it closes) and wait at most `RELEASE_WAIT_S` for it."""

    def quietly() -> None:
        try:
            release()
        except Exception as exc:
            log.debug("releasing the %s evaluator lease failed: %s", what, exc)

    thread = threading.Thread(target=quietly, name=f"relevo-release-{what}", daemon=True)
    thread.start()
    deadline = time.monotonic() + RELEASE_WAIT_S
    while thread.is_alive() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    if thread.is_alive():
        log.info(
            "the %s evaluator lease was not released within %g s (the database does not "
            "answer): it expires by itself",
            what,
            RELEASE_WAIT_S,
        )
