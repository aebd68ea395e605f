"""Chapter: a year on, the customer base has aged and prices have risen; the traffic a
deployment answers drifts, and the drift report names exactly those features."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import relevo
from relevo.client import Client
from relevo.datasets import CHURN_FEATURES, CHURN_ID, make_churn
from relevo.demo.rollout import wait_serving
from relevo.demo.story import Chapter, Demo, need
from relevo.demo.view import table
from relevo.errors import NotFoundError, UnavailableError
from relevo.monitoring.alerts.service import AlertService
from relevo.monitoring.alerts.state import Alert
from relevo.monitoring.drift import DriftReport, FeatureDrift
from relevo.monitoring.service import MonitoringService

#: a deployment of its own, so that its window holds only the drifted traffic
DRIFTING = "churn-drift"
CUSTOMERS = 2000
AGEING, PRICE_CHANGE = 5.0, 0.15
DEADLINE_S = 30.0


#: evaluations on demand at most (drift rules need 3 of 5 by default)
LOOKS = 5


def run(demo: Demo) -> None:
    server, version = need(demo.server, "serve"), need(demo.version, "register")
    train = need(demo.train, "train")
    rv, seed = demo.rv, demo.options.seed
    rv.deployments.deploy(DRIFTING, version.ref, actor="demo", reason="next year's customers")
    since = datetime.now(UTC) - timedelta(seconds=rv.settings.profile_bucket_s)
    customers = make_churn(
        CUSTOMERS, seed=seed + 16, ageing=AGEING, price_change=PRICE_CHANGE, id_start=70_000_000
    )
    demo.view.say(
        f"A year on: {CUSTOMERS:,} customers, {AGEING:.0f} years older on average, paying "
        f"{PRICE_CHANGE:.0%} more, are scored by {version.ref} on deployment {DRIFTING}."
    )
    rows = customers[[CHURN_ID, *CHURN_FEATURES]]
    # a second run finds the deployment serving the last run's version: wait for this one
    wait_serving(server.url, [version.ref], DEADLINE_S, deployment=DRIFTING)
    with Client(server.url) as client:
        client.predict(DRIFTING, rows)
    service = MonitoringService(rv)
    report = _report(service, since, CUSTOMERS, version.ref)
    demo.view.show(
        table(
            f"Drift of {DRIFTING} against the reference of {version.ref}",
            ["feature", "test", "statistic", "threshold", "drifted"],
            [_row(f) for f in [*report.features, *_extra(report)]],
            right=["statistic", "threshold"],
        )
    )
    named = report.drifted_features
    demo.view.say(
        f"Drifted: [bold]{', '.join(named) or 'nothing'}[/] ({len(named)} of "
        f"{len(report.evaluable_features)} features; dataset drift from "
        f"{report.dataset_share:.0%} of them: {'yes' if report.dataset_drift else 'no'})."
    )
    offline = relevo.drift(train[CHURN_FEATURES], customers[CHURN_FEATURES])
    demo.view.say(
        "Without a server, relevo.drift(train, new_customers) on the raw frames names "
        f"the same: {', '.join(offline.drifted_features) or 'nothing'}."
    )
    fired = _alerts(demo)
    if fired:
        drifted = sorted(a.subject for a in fired if a.rule == "feature_drift")
        others = sorted({a.rule for a in fired if a.rule != "feature_drift"})
        incidents = len({a.incident for a in fired})
        demo.view.say(
            f"Alerts on {DRIFTING}: feature_drift on [bold]{', '.join(drifted) or 'nothing'}[/]"
            f"{', ' + ', '.join(others) if others else ''}: {incidents} incident, notified "
            "once (a drift rule fires when 3 of the last 5 evaluations see it)."
        )
    page = demo.home / "drift.html"
    page.write_text(report.to_html(), encoding="utf-8")
    demo.view.say(f"The HTML report, plots and all, opens offline: {page.name} (in the home).")
    demo.summary["drift"] = {
        "deployment": DRIFTING,
        "model": report.model,
        "rows": report.current_rows,
        "drifted": named,
        "drifted_offline": offline.drifted_features,
        "prediction_drifted": bool(report.prediction and report.prediction.drifted),
        "dataset_drift": report.dataset_drift,
        "html": str(page),
        "alerts": sorted(f"{a.rule}[{a.subject}]" if a.subject else a.rule for a in fired),
    }


def _alerts(demo: Demo) -> list[Alert]:
    """Evaluate the alert rules on demand, as `relevo alerts evaluate` does (the server does it
    every minute), until the drift rules' persistence is met; the deployment's firing alerts."""
    alerts = AlertService(demo.rv)
    demo.on_close(lambda: alerts.dispatcher.close(2.0))
    fired: list[Alert] = []
    for _ in range(LOOKS):
        alerts.evaluate()
        fired = alerts.list(DRIFTING)
        if any(a.rule == "feature_drift" for a in fired):
            break
    return fired


def _report(service: MonitoringService, since: datetime, rows: int, ref: str) -> DriftReport:
    """The drift report of `ref` once the server has stored the profiles of every row it
    answered (it may take longer on a busy machine, as long as the count grows)."""
    deadline, stored = time.monotonic() + DEADLINE_S, 0
    while True:
        until = datetime.now(UTC) + timedelta(minutes=1)
        try:
            now = service.window(DRIFTING, since, until, model=ref).rows
        except NotFoundError:
            now = 0
        if now >= rows:
            return service.drift(DRIFTING, since, until, model=ref)
        if now > stored:
            deadline, stored = time.monotonic() + DEADLINE_S, now
        if time.monotonic() > deadline:
            raise UnavailableError(f"the server did not store the profiles of {DRIFTING!r}")
        time.sleep(0.2)


def _extra(report: DriftReport) -> list[FeatureDrift]:
    return [c for c in (report.prediction, report.multivariate) if c is not None]


def _row(f: FeatureDrift) -> list[str]:
    statistic = f"{f.statistic:.3f}" if f.statistic is not None else ""
    rule = "p < " if f.is_p_value else ""
    verdict = "DRIFT" if f.drifted else ("no" if f.evaluable else "n/a")
    return [f.feature, f.method, statistic, f"{rule}{f.threshold:.3g}", verdict]


CHAPTER = Chapter(
    key="drift",
    title="See the data drift",
    why="Customers age and prices rise: the inputs leave the training data behind, and the "
    "drift report says which, before the business does.",
    run=run,
)
