"""Chapter: a challenger that breaks in production is rolled back by its gate within seconds,
while every caller is answered by the champion."""

from __future__ import annotations

import time

from relevo import __version__
from relevo.datasets import CHURN_TARGET
from relevo.demo.rollout import IN_PRODUCTION, ROLLOUT, FailsInProduction, Traffic, wait_serving
from relevo.demo.story import SOURCE, Chapter, Demo, need
from relevo.demo.view import table
from relevo.errors import UnavailableError

BATCH = 50
DEADLINE_S = 60.0


def run(demo: Demo) -> None:
    server = need(demo.server, "serve")
    model, train = need(demo.model, "train"), need(demo.train, "train")
    rv = demo.rv
    champion = rv.deployments.get(ROLLOUT)
    broken = rv.registry.register(
        "churn-broken",
        FailsInProduction(model),
        train,
        target=CHURN_TARGET,
        tags={"source": SOURCE, "relevo": __version__},
    )
    IN_PRODUCTION["on"] = True  # its library is missing in production: every call fails
    demo.on_close(lambda: IN_PRODUCTION.update(on=False))
    rv.deployments.deploy(ROLLOUT, broken.ref, weight=0.2, actor="demo", reason="hotfix")
    wait_serving(server.url, [champion.model_ref, broken.ref])
    demo.view.say(
        f"[bold]{broken.ref}[/] goes out as a canary at 20 %; in production every one of its "
        "calls fails."
    )
    traffic = Traffic(server.url, demo.options.seed + 15, start_id=60_000_000)
    demo.on_close(traffic.close)
    started = time.monotonic()
    while rv.deployments.get(ROLLOUT).has_challenger:
        if time.monotonic() - started > DEADLINE_S:
            raise UnavailableError(f"the gate did not roll {broken.ref} back")
        traffic.send(BATCH)
    seconds = time.monotonic() - started
    sent = sum(traffic.models.values())
    demo.view.say(
        f"Its gate rolled it back after {seconds:.1f} s; {traffic.requests:,} requests "
        f"({sent:,} customers) were all answered, {traffic.failed} failed: the champion "
        "answered every row the challenger could not."
    )
    events = rv.deployments.history(ROLLOUT)
    demo.view.show(
        table(
            f"History of {ROLLOUT}",
            ["revision", "action", "by", "why"],
            [
                [e.state.get("revision", ""), e.action, e.actor or "", e.reason or ""]
                for e in events
            ],
        )
    )
    demo.summary["broken"] = {
        "challenger": broken.ref,
        "requests": traffic.requests,
        "requests_failed": traffic.failed,
        "rolled_back_by": events[-1].actor,
        "reason": events[-1].reason,
    }


CHAPTER = Chapter(
    key="broken",
    title="Roll a broken challenger back",
    why="A challenger that fails in production is withdrawn by its gate; no caller notices.",
    run=run,
)
