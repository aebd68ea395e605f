"""Chapter: what the service saw, from its /metrics and its prediction log."""

from __future__ import annotations

import time

import pandas as pd

from relevo.demo.scrape import Scrape, scrape
from relevo.demo.story import DEPLOYMENT, Chapter, Demo, need
from relevo.demo.view import histogram, table
from relevo.errors import UnavailableError
from relevo.serving.records import predictions_frame

LATENCY = "relevo_request_latency_seconds"
FLUSH_TIMEOUT_S = 30.0


def run(demo: Demo) -> None:
    server = need(demo.server, "serve")
    version = need(demo.version, "register")
    stats = need(demo.stats, "traffic")
    seen = scrape(server.url) - need(demo.metrics_before, "traffic")
    _metrics(demo, seen, version.ref)
    logged = _wait_for_log(demo, demo.logged_before + stats.rows)
    demo.summary["rows_logged"] = logged - demo.logged_before
    demo.summary["log_rows_total"] = logged
    chunks = [predictions_frame(rows) for rows in demo.rv.store.predictions.iter_rows(DEPLOYMENT)]
    log = pd.concat(chunks, ignore_index=True)
    log = log[log["model"] == version.ref].reset_index(drop=True)
    demo.log = log
    earlier = (
        f" ({logged - len(log):,} more from earlier runs in this home)" if logged > len(log) else ""
    )
    demo.view.say(
        f"The prediction log holds {len(log):,} rows from {version.ref}{earlier}: id, time, "
        "customer, features and answer of every prediction."
    )
    demo.view.say("Predicted churn probability of the customers scored:")
    demo.view.show(histogram(log["probability"].to_numpy()))
    churners = (log["label"] == 1).mean()
    demo.view.say(f"{churners:.1%} are predicted to leave (probability ≥ 0.5).")
    top = log.nlargest(5, "probability")
    rows = [
        [
            r.routing_key,
            f"{r.probability:.3f}",
            r.contract,
            r.tenure_months,
            f"{r.monthly_charges:.2f}",
            r.support_calls,
            "" if pd.isna(r.satisfaction) else r.satisfaction,
        ]
        for r in top.itertuples()
    ]
    demo.view.show(
        table(
            "Riskiest customers: call them first",
            ["customer", "p(churn)", "contract", "tenure", "charges", "calls", "satisf."],
            rows,
            right=["p(churn)", "tenure", "charges", "calls", "satisf."],
        )
    )


def _metrics(demo: Demo, seen: Scrape, ref: str) -> None:
    by_status: dict[str, float] = {}
    for labels, count in seen.where("relevo_requests_total", deployment=DEPLOYMENT).items():
        status = dict(labels)["status"]
        by_status[status] = by_status.get(status, 0.0) + count
    requests = int(sum(by_status.values()))
    errors = int(sum(c for s, c in by_status.items() if int(s) >= 400))
    rows = int(seen.total("relevo_predictions_total", deployment=DEPLOYMENT))
    p50 = seen.quantile(0.5, LATENCY, deployment=DEPLOYMENT)
    p99 = seen.quantile(0.99, LATENCY, deployment=DEPLOYMENT)
    calls = seen.total("relevo_model_batch_rows_count", model=ref)
    per_call = seen.total("relevo_model_batch_rows_sum", model=ref) / calls if calls else 0.0
    statuses = ", ".join(f"{int(c):,} x {s}" for s, c in sorted(by_status.items()))
    demo.view.show(
        table(
            "From GET /metrics (Prometheus), this run only",
            ["", "value", "metric"],
            [
                ["requests", f"{requests:,}", f"relevo_requests_total ({statuses})"],
                ["errors", f"{errors:,}", "relevo_requests_total, status ≥ 400"],
                ["rows predicted", f"{rows:,}", "relevo_predictions_total"],
                ["latency p50", _ms(p50), f"{LATENCY} (buckets)"],
                ["latency p99", _ms(p99), f"{LATENCY} (buckets)"],
                ["rows per model call", f"{per_call:.1f}", "relevo_model_batch_rows (batching)"],
            ],
            right=["value"],
        )
    )
    demo.summary.update(
        server_requests=requests,
        server_errors=errors,
        rows_predicted=rows,
        p50_ms=None if p50 is None else round(p50 * 1000, 2),
        p99_ms=None if p99 is None else round(p99 * 1000, 2),
        rows_per_model_call=round(per_call, 2),
    )


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _wait_for_log(demo: Demo, expected: int) -> int:
    """The log's row count once it holds every answered row (it is written in the background)."""
    deadline = time.monotonic() + FLUSH_TIMEOUT_S
    with demo.view.status("waiting for the prediction log to be written"):
        while (count := demo.rv.store.predictions.count(DEPLOYMENT)) < expected:
            if time.monotonic() > deadline:
                raise UnavailableError(
                    f"the prediction log holds {count:,} rows after {FLUSH_TIMEOUT_S:g} s, "
                    f"expected {expected:,}"
                )
            time.sleep(0.05)
    return count


CHAPTER = Chapter(
    key="observe",
    title="What the service saw",
    why="Monitoring: /metrics as Prometheus scrapes it, and the log that drift, feedback and "
    "retraining read.",
    run=run,
)
