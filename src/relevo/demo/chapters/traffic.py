"""Chapter: a few simulated days of customers sent over HTTP, concurrently, with a live view."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from rich.console import Group
from rich.text import Text

from relevo.client import Client
from relevo.datasets import CHURN_FEATURES, CHURN_ID, make_churn
from relevo.demo.scrape import scrape
from relevo.demo.story import DEPLOYMENT, Chapter, Demo, need
from relevo.demo.traffic import Snapshot, TrafficStats, plan_requests, send
from relevo.demo.view import bar
from relevo.errors import InvalidInputError


def run(demo: Demo) -> None:
    server = need(demo.server, "serve")
    options = demo.options
    rng = np.random.default_rng(options.seed)
    days = _days(demo)
    demo.customers = pd.concat(days, ignore_index=True)
    demo.metrics_before = scrape(server.url)
    demo.logged_before = demo.rv.store.predictions.count(DEPLOYMENT)
    plans = [
        plan_requests(day[[CHURN_ID, *CHURN_FEATURES]], number, rng)
        for number, day in enumerate(days, 1)
    ]
    total = len(demo.customers)
    singles = sum(len(r.customers) == 1 for plan in plans for r in plan)
    batches = sum(len(plan) for plan in plans) - singles
    demo.view.say(
        f"{total:,} new customers over {len(days)} days, from {options.threads} concurrent "
        f"callers: {singles:,} scored one by one (an app) and {batches:,} batches (a CRM sync), "
        "mixed."
    )
    stats = TrafficStats()
    with demo.view.live() as update:
        for number, plan in enumerate(plans, 1):

            def redraw(day: int = number) -> None:
                update(_live(day, len(plans), stats.snapshot(), total))

            send(server.url, DEPLOYMENT, plan, stats, threads=options.threads, tick=redraw)
    done = stats.overall()
    demo.view.say(
        f"Answered {done.rows:,} customers in {done.requests:,} requests in {done.seconds:.1f} s "
        f"({done.per_second:,.0f} requests/s); callers waited p50 {done.p50_ms:.1f} ms, "
        f"p99 {done.p99_ms:.1f} ms."
    )
    demo.view.note(
        "(The callers share one Python process with the server and compete with it for the "
        "CPU; a server of its own answers faster.)"
    )
    _planted_error(demo, server.url, stats, days[0])
    demo.stats = stats
    done = stats.overall()
    demo.summary.update(
        customers=total,
        requests_sent=done.requests,
        requests_failed=done.failed,
        rows_sent=total,
        rows_answered=done.rows,
        client_p50_ms=round(done.p50_ms, 2),
        client_p99_ms=round(done.p99_ms, 2),
    )


def _days(demo: Demo) -> list[pd.DataFrame]:
    """New customers, day by day: other seeds than training, ids counting on after it."""
    options = demo.options
    sizes = np.diff(np.linspace(0, options.customers, options.days + 1).round().astype(int))
    days, next_id = [], options.train_customers
    for number, size in enumerate(sizes, 1):
        if size == 0:
            continue
        days.append(make_churn(int(size), seed=options.seed + 1000 + number, id_start=next_id))
        next_id += int(size)
    return days


def _live(day: int, days: int, snap: Snapshot, total: int) -> Group:
    progress = Text.assemble(
        (f"day {day} of {days}  ", "bold"), bar(snap.rows, total), f"  {snap.rows:,}/{total:,}"
    )
    numbers = Text(
        f"{snap.requests:,} requests · {snap.per_second:,.0f} req/s · p50 {snap.p50_ms:.1f} ms · "
        f"p95 {snap.p95_ms:.1f} ms · p99 {snap.p99_ms:.1f} ms · {snap.failed} failed",
        style="dim",
    )
    return Group(progress, numbers)


def _planted_error(demo: Demo, url: str, stats: TrafficStats, customers: pd.DataFrame) -> None:
    """One caller with a bug: a wrong type and a missing column; the answer says what is wrong."""
    row = customers[[CHURN_ID, *CHURN_FEATURES]].iloc[0].to_dict()
    row["age"] = "forty-two"
    del row["tenure_months"]
    demo.view.say(
        'Now one caller gets it wrong: [bold]age[/] sent as the string "forty-two", '
        "[bold]tenure_months[/] left out."
    )
    began = time.perf_counter()
    with Client(url) as client:
        try:
            client.predict_records(DEPLOYMENT, [row])
        except InvalidInputError as exc:
            stats.refused(exc, time.perf_counter() - began)
            demo.view.say(f"[red]HTTP {exc.http_status}[/]: {exc.message}")
            for problem in exc.problems:
                demo.view.say(f"  [red]•[/] {problem}")
            demo.view.say(
                "Nothing was scored or logged for it; the other callers were not disturbed."
            )
            demo.summary["planted_error"] = {
                "status": exc.http_status,
                "message": exc.message,
                "problems": [p.to_dict() for p in exc.problems],
            }
            return
    stats.answered(pd.DataFrame([row]), time.perf_counter() - began)
    demo.view.say("[red]The server accepted the malformed request[/]: that is a bug.")
    demo.summary["planted_error"] = None


CHAPTER = Chapter(
    key="traffic",
    title="Traffic",
    why="Production: several callers at once send customers over real HTTP with relevo.Client.",
    run=run,
)
