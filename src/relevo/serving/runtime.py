"""The serving runtime: the pool of loaded models and the predictor, composed for the doors.

Transport-free: the HTTP server and batch scoring both call `Runtime.predict`. The jobs live
in their own modules: `pool` (load, retry, freeze the heap, pick up changes), `predictor`
(validate, route, predict, answer, log), `runner` (one model and its micro-batcher).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Collection
from typing import Any

from relevo.context import Relevo
from relevo.routing.assign import assign as route
from relevo.serving.log import PredictionLog
from relevo.serving.metrics import ServingMetrics
from relevo.serving.pool import Endpoint, ModelPool
from relevo.serving.predictor import Answer, Assign, Predictor
from relevo.serving.runner import ModelRunner
from relevo.serving.shadow import ShadowWorker
from relevo.serving.validation import Policy, Validated

__all__ = ["Answer", "Endpoint", "ModelRunner", "Runtime"]

log = logging.getLogger(__name__)


class Runtime:
    """Deployments loaded from the store, kept in step with it, answering predictions."""

    def __init__(
        self,
        relevo: Relevo,
        *,
        prediction_log: PredictionLog | None = None,
        metrics: ServingMetrics | None = None,
        only: Collection[str] | None = None,
        freeze_heap: bool = False,
        assign: Assign = route,
    ) -> None:
        self.relevo = relevo
        self.settings = relevo.settings
        self.log = prediction_log
        self.metrics = metrics
        self.policy = Policy(
            reject_unseen_categories=self.settings.reject_unseen_categories,
            reject_out_of_range=self.settings.reject_out_of_range,
        )
        self.pool = ModelPool(relevo, only=only, freeze_heap=freeze_heap, on_load=self._on_load)
        self.shadow = ShadowWorker(
            relevo.store, self.policy, self.settings.shadow_queue_rows, metrics
        )
        self.shadow.profiles = prediction_log.profiles if prediction_log is not None else None
        plog = prediction_log
        if plog is not None and plog.profiles is not None and plog.remote is None:
            # the predictor hands its rows over as it logs (a writer process profiles them
            # from the log's entries instead)
            plog.profiles.direct = True
        self.predictor = Predictor(
            self.pool,
            policy=self.policy,
            prediction_log=prediction_log,
            metrics=metrics,
            assign=assign,
            shadow=self.shadow,
        )
        self._export_lock = threading.Lock()

    def _on_load(self, runner: ModelRunner) -> None:
        if self.metrics is not None:
            runner.batcher.on_batch = self.metrics.batch_size.labels(runner.ref).observe
        if self.log is not None:  # a batch's log entries, written where it was scored
            runner.batcher.on_scored = self.predictor.log_scored

    # ---- the pool ------------------------------------------------------------------------
    def refresh(self, strict: bool = False) -> bool:
        """Load what changed in the store; True when what is served changed (see ModelPool).
        A change also updates the rollout gauges (done here, never on the request path)."""
        changed = self.pool.refresh(strict)
        if changed and self.metrics is not None:
            self._export_rollouts(self.metrics)
        return changed

    def _export_rollouts(self, metrics: ServingMetrics) -> None:
        """The rollout gauges from what this process serves now: a challenger that could not
        load answers no rows, so it reads 0 whatever its deployment says."""
        # under a lock and from the pool's current endpoints, so the last writer is never a
        # refresh that read an older state
        with self._export_lock:
            served: dict[tuple[str, str, str], tuple[float, float]] = {}
            for endpoint in self.pool.endpoints.values():
                dep = endpoint.deployment
                live = len(endpoint.runners) > 1
                weight = dep.weight if live and dep.strategy == "canary" else 0.0
                mirror = dep.mirror if live and dep.strategy == "shadow" else 0.0
                served[(dep.name, dep.model_ref, dep.challenger_ref or "")] = (weight, mirror)
            metrics.set_rollouts(served)

    @property
    def loaded(self) -> bool:
        return self.pool.loaded

    @property
    def failures(self) -> dict[str, Exception]:
        return self.pool.failures

    @property
    def endpoints(self) -> dict[str, Endpoint]:
        return self.pool.endpoints

    def endpoint(self, name: str) -> Endpoint:
        return self.pool.endpoint(name)

    async def watch(self) -> None:
        """Poll the store for deployment changes until cancelled."""
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            try:
                await asyncio.to_thread(self.refresh)
                if self.metrics is not None:
                    self.metrics.sample_process()
                    if self.log is not None:
                        self.metrics.log_depth.set(self.log.depth)
            except Exception as exc:
                log.warning("checking deployments failed: %s", exc)

    # ---- the predictor -------------------------------------------------------------------
    async def predict(
        self,
        name: str,
        rows: Any,
        started: float | None = None,
        protocol: str = "v1",
        force: int | None = None,
    ) -> Answer:
        """Validate, route, score and log `rows` for deployment `name` (`force`: every row to
        the champion, 0, or the challenger, 1, instead of the deployment's routing)."""
        return await self.predictor.predict(name, rows, started, protocol, force)

    def observe(
        self,
        name: str,
        model: str,
        protocol: str,
        status: int,
        latency: float,
        validated: Validated | None = None,
    ) -> None:
        """Count a request that was not answered (or answered elsewhere) in the metrics."""
        m = self.metrics
        if m is None:
            return
        m.request(name, model, protocol, str(status)).inc()
        m.latency_of(name).observe(latency)
        if validated is not None:
            m.rows_of(name, model).inc(validated.n)
