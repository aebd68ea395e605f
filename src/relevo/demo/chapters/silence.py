"""Chapter: traffic stops, the "no predictions" alert fires; traffic resumes and it resolves.

To stay fast the rule looks at 2-second windows (a deployment setting; the default is five
minutes against a week of history) and the chapter evaluates on demand, as
`relevo alerts evaluate` does, instead of waiting for the server's schedule.
"""

from __future__ import annotations

import time

from relevo.demo.rollout import Traffic, wait_serving
from relevo.demo.story import Chapter, Demo, need
from relevo.demo.view import table
from relevo.errors import UnavailableError
from relevo.monitoring.alerts import config
from relevo.monitoring.alerts.service import AlertService
from relevo.monitoring.alerts.state import Notification

RULE = "no_predictions"
#: a deployment of its own, so the alerts of the rollout chapters stay out of this story
QUIET = "churn-quiet"
WINDOW_S = 2.0
SETTINGS = [
    f"alerts.{RULE}.window_s={WINDOW_S:g}",
    f"alerts.{RULE}.trailing_windows=4",
]
BATCH = 20
DEADLINE_S = 30.0


def run(demo: Demo) -> None:
    server, version = need(demo.server, "serve"), need(demo.version, "register")
    rv = demo.rv
    rv.deployments.deploy(QUIET, version.ref, actor="demo", reason="watched for silence")
    config.update(rv, QUIET, SETTINGS)
    wait_serving(server.url, [version.ref], deployment=QUIET)
    alerts = AlertService(rv)
    demo.on_close(lambda: alerts.dispatcher.close(2.0))
    traffic = Traffic(server.url, demo.options.seed + 16, start_id=70_000_000, deployment=QUIET)
    demo.on_close(traffic.close)
    rows: list[list[str]] = []
    notes: list[Notification] = []
    began = time.monotonic()

    def evaluate(moment: str) -> str:
        report = alerts.evaluate()
        notes.extend(n for n in report.notifications if n.deployment == QUIET)
        track = rv.store.alerts.tracks().get((QUIET, RULE, ""))
        firing = any(a.deployment == QUIET and a.rule == RULE for a in alerts.list())
        state = "firing" if firing else "ok"
        seen = "" if track is None or track.value is None else f"{track.value:,.0f}"
        expected = "" if track is None or track.threshold is None else f"{track.threshold:,.0f}"
        rows.append([f"{time.monotonic() - began:4.1f} s", moment, seen, expected, state])
        return state

    def flow(seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            traffic.send(BATCH)

    with demo.view.status("customers keep coming"):
        flow(4 * WINDOW_S + 1)
    evaluate("traffic flows")
    stopped = time.monotonic()
    with demo.view.status("the callers go quiet"):
        while evaluate("no traffic") != "firing":
            if time.monotonic() - stopped > DEADLINE_S:
                raise UnavailableError("the no_predictions alert did not fire")
            time.sleep(WINDOW_S / 4)
    fired_after = time.monotonic() - stopped
    resumed = time.monotonic()
    with demo.view.status("traffic comes back"):
        while True:
            flow(WINDOW_S / 4)
            if evaluate("traffic back") == "ok":
                break
            if time.monotonic() - resumed > DEADLINE_S:
                raise UnavailableError("the no_predictions alert did not resolve")
    demo.view.say(
        f"Traffic to [bold]{QUIET}[/] stopped: with nothing in the last {WINDOW_S:g} s "
        f"while its own history expected rows, [bold]no_predictions[/] fired after "
        f"{fired_after:.1f} s, and resolved as soon as customers came back."
    )
    demo.view.show(
        table(
            f"Evaluations of {RULE} on {QUIET}",
            ["at", "moment", f"rows in {WINDOW_S:g} s", "expected", "alert"],
            rows,
            right=["at", f"rows in {WINDOW_S:g} s", "expected"],
        )
    )
    kinds = " and ".join(f"one when it {'fired' if n.kind == 'firing' else n.kind}" for n in notes)
    demo.view.say(
        f"One incident, {len(notes)} notifications: {kinds} (to the log here; to webhooks or "
        "Slack where RELEVO_ALERT_WEBHOOK_URL or RELEVO_ALERT_SLACK_URL is set)."
    )
    demo.summary["silence"] = {
        "deployment": QUIET,
        "evaluations": len(rows),
        "fired_after_s": round(fired_after, 2),
        "notifications": [n.kind for n in notes],
        "incident": notes[0].incident if notes else None,
    }
    demo.view.command(f"relevo alerts --all --deployment {QUIET}", "every incident kept")


CHAPTER = Chapter(
    key="silence",
    title="When the predictions stop",
    why="Traffic stops while history says it should not: the no_predictions alert fires "
    "once, and resolves when customers come back.",
    run=run,
)
