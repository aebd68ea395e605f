"""Computational monitoring in Prometheus' text format.

With several server workers, prometheus-client's multiprocess mode is used: `relevo serve`
sets PROMETHEUS_MULTIPROC_DIR before the workers start, and each worker's values are summed
(or listed per process) when /metrics is scraped. A worker that ended (killed outright, and
replaced by uvicorn) keeps its counters in the sums, as Prometheus expects; its gauges are
dropped at the next scrape.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class ServingMetrics:
    """The server's metrics, registered once per process."""

    def __init__(self, registry: CollectorRegistry = DEFAULT_REGISTRY) -> None:
        self.requests = Counter(
            "relevo_requests_total",
            "Prediction requests answered, by deployment, model, protocol and HTTP status.",
            ["deployment", "model", "protocol", "status"],
            registry=registry,
        )
        self.rows = Counter(
            "relevo_predictions_total",
            "Rows predicted, by deployment and model.",
            ["deployment", "model"],
            registry=registry,
        )
        self.latency = Histogram(
            "relevo_request_latency_seconds",
            "Time from request received to answer ready, by deployment.",
            ["deployment"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "relevo_model_batch_rows",
            "Rows per model call after micro-batching, by model.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.quality = Counter(
            "relevo_data_quality_findings_total",
            "Answered values that were unseen categories or outside the reference range.",
            ["deployment", "column", "finding"],
            registry=registry,
        )
        self.challenger_failures = Counter(
            "relevo_challenger_failures_total",
            "Rows a canary challenger failed on (the champion answered them instead), by "
            "deployment and challenger model.",
            ["deployment", "model"],
            registry=registry,
        )
        self.unkeyed_rows = Counter(
            "relevo_routing_key_missing_total",
            "Rows of a deployment routed by a key column that came without it (they are split "
            "between the models at random, not sticky), by deployment.",
            ["deployment"],
            registry=registry,
        )
        self.shadow_rows = Counter(
            "relevo_shadow_rows_total",
            "Rows mirrored to a shadow challenger, by deployment, model and outcome "
            "(scored, failed, dropped when its queue was full).",
            ["deployment", "model", "outcome"],
            registry=registry,
        )
        self.log_depth = Gauge(
            "relevo_prediction_log_queue_rows",
            "Prediction rows accepted but not yet stored.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.log_written = Counter(
            "relevo_prediction_log_rows_written_total",
            "Prediction rows written to the store.",
            registry=registry,
        )
        self.log_errors = Counter(
            "relevo_prediction_log_write_errors_total",
            "Failed (and retried) writes of the prediction log.",
            registry=registry,
        )
        self.log_dead_letter = Gauge(
            "relevo_prediction_log_dead_letter_rows",
            "Prediction rows the store refused, kept in the dead-letter file instead.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.cpu = Gauge(
            "relevo_process_cpu_seconds",
            "CPU time used by each server process (user + system).",
            multiprocess_mode="liveall",
            registry=registry,
        )
        self.memory = Gauge(
            "relevo_process_resident_memory_bytes",
            "Resident memory of each server process.",
            multiprocess_mode="liveall",
            registry=registry,
        )
        self.started = Gauge(
            "relevo_process_start_time_seconds",
            "Start time of each server process (Unix time).",
            multiprocess_mode="liveall",
            registry=registry,
        )
        self.challenger_weight = Gauge(
            "relevo_deployment_challenger_weight",
            "Share of rows a canary challenger answers (0 for a shadow or no challenger, or "
            "while the challenger cannot load), by deployment, champion and challenger.",
            ["deployment", "champion", "challenger"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.shadow_mirror = Gauge(
            "relevo_deployment_shadow_mirror",
            "Share of rows mirrored to a shadow challenger (0 without a loaded shadow), by "
            "deployment, champion and challenger.",
            ["deployment", "champion", "challenger"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self._rollout_keys: set[tuple[str, str, str]] = set()
        self._rollout_lock = threading.Lock()
        self.started.set(time.time())
        self.sample_process()
        # label children are looked up once per (deployment, model...), not per request: a
        # `labels()` call costs a lock and a dict of tuples each time
        self._children: dict[tuple[Any, ...], Any] = {}

    def request(self, deployment: str, model: str, protocol: str, status: str) -> Any:
        """The requests counter of these labels (cached)."""
        key = ("r", deployment, model, protocol, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(deployment, model, protocol, status)
        return child

    def latency_of(self, deployment: str) -> Any:
        """The latency histogram of a deployment (cached)."""
        key = ("l", deployment)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.latency.labels(deployment)
        return child

    def rows_of(self, deployment: str, model: str) -> Any:
        """The predicted-rows counter of a deployment and model (cached)."""
        key = ("p", deployment, model)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.rows.labels(deployment, model)
        return child

    def set_rollouts(self, served: Mapping[tuple[str, str, str], tuple[float, float]]) -> None:
        """Set the rollout gauges: `served` maps (deployment, champion, challenger) to (canary
        weight, shadow mirror). Label sets served before but not now go to 0 (a multiprocess
        gauge cannot drop a label), so a rolled-back challenger reads 0, not its last share."""
        with self._rollout_lock:  # the watcher and admin requests may refresh at once
            values = dict.fromkeys(self._rollout_keys - served.keys(), (0.0, 0.0))
            values.update(served)
            for key, (weight, mirror) in values.items():
                self.challenger_weight.labels(*key).set(weight)
                self.shadow_mirror.labels(*key).set(mirror)
            self._rollout_keys = set(served)

    def sample_process(self) -> None:
        """Refresh the per-process CPU and memory gauges."""
        times = os.times()
        self.cpu.set(times.user + times.system)
        self.memory.set(_resident_bytes())


def _resident_bytes() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return float(int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return float(usage.ru_maxrss * 1024)


def render_metrics() -> tuple[bytes, str]:
    """The text exposition of this process (or of all workers in multiprocess mode)."""
    folder = multiprocess_dir()
    if folder:
        from prometheus_client import multiprocess

        forget_dead_processes(folder)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(DEFAULT_REGISTRY), CONTENT_TYPE_LATEST


_metrics: ServingMetrics | None = None


def get_metrics() -> ServingMetrics:
    """The process's metrics (created on first use; prometheus names are process-global)."""
    global _metrics
    if _metrics is None:
        _metrics = ServingMetrics()
    return _metrics


_METRIC_FILE = re.compile(r"(counter|histogram|summary|gauge_[a-z]+)_[^/]+\.db")
#: the files of gauges shown only while their process lives ("gauge_livemax_1234.db")
_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def forget_dead_processes(folder: str) -> list[int]:
    """Drop the live gauges of the processes that wrote to `folder` and have ended; returns
    their pids. A worker killed outright (`kill -9`, the OOM killer) never says so, and
    without this its last values (a challenger's weight, its CPU seconds) stayed in /metrics
    for the life of the server. Its counters stay in the sums, as Prometheus expects."""
    from prometheus_client import multiprocess

    try:
        names = os.listdir(folder)
    except OSError:
        return []
    pids = {int(m.group(1)) for m in map(_LIVE_GAUGE_FILE.fullmatch, names) if m}
    dead = sorted(pid for pid in pids if not _alive(pid))
    for pid in dead:
        # another worker's scrape may remove the same files at the same moment
        with contextlib.suppress(FileNotFoundError):
            multiprocess.mark_process_dead(pid, folder)
    return dead


def _alive(pid: int) -> bool:
    if sys.platform == "win32":  # os.kill(pid, 0) sends Ctrl-C there: keep them all
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, someone else's
        return True
    return True


def empty_multiprocess_dir(folder: Path) -> int:
    """Delete the metric files a previous server left in `folder` (created if missing); returns
    how many. A container restarted in the same pod keeps its emptyDir: without this its dead
    processes' counters would be summed into the new ones."""
    folder.mkdir(parents=True, exist_ok=True)
    # prometheus-client's own files only ("counter_1234.db", "gauge_livemax_1234.db", ...):
    # the folder may be shared, or be RELEVO_HOME itself, whose relevo.db is the store
    stale = [p for p in folder.glob("*.db") if _METRIC_FILE.fullmatch(p.name)]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
