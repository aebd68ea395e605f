"""Chapter: a new model arrives (gradient-boosted trees on the same data), runs in shadow, then
as a canary by customer key through a progressive rollout whose gates promote it."""

from __future__ import annotations

import time

from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from relevo import __version__
from relevo.context import Relevo
from relevo.datasets import CHURN_FEATURES, CHURN_ID, CHURN_TARGET
from relevo.demo.chapters.train import churn_pipeline
from relevo.demo.rollout import ROLLOUT, Traffic, wait_serving
from relevo.demo.story import SOURCE, Chapter, Demo, need
from relevo.demo.view import table
from relevo.errors import UnavailableError
from relevo.routing.stats import shadow_comparison

BATCH = 250
DEADLINE_S = 120.0


def run(demo: Demo) -> None:
    server, version = need(demo.server, "serve"), need(demo.version, "register")
    train, holdout = need(demo.train, "train"), need(demo.holdout, "train")
    rv, seed = demo.rv, demo.options.seed
    gbm = churn_pipeline().set_params(
        preprocess__sparse_threshold=0.0, model=HistGradientBoostingClassifier(random_state=seed)
    )
    with demo.view.status("fitting gradient-boosted trees"):
        gbm.fit(train[CHURN_FEATURES], train[CHURN_TARGET])
    auc = float(
        roc_auc_score(holdout[CHURN_TARGET], gbm.predict_proba(holdout[CHURN_FEATURES])[:, 1])
    )
    new = rv.registry.register(
        "churn-gbm", gbm, train, target=CHURN_TARGET, tags={"source": SOURCE, "relevo": __version__}
    )
    demo.view.say(
        f"A new model arrives: [bold]{new.ref}[/], gradient-boosted trees (ROC AUC {auc:.3f})."
    )
    rv.deployments.deploy(ROLLOUT, version.ref, key=CHURN_ID, actor="demo")
    rv.deployments.deploy(ROLLOUT, new.ref, strategy="shadow", actor="demo", reason="a new model")
    wait_serving(server.url, [version.ref, new.ref])
    traffic = Traffic(server.url, seed + 14, start_id=50_000_000)
    demo.on_close(traffic.close)
    for _ in range(8):
        traffic.send(BATCH)
    state = rv.deployments.get(ROLLOUT)
    compared = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the shadow scores after the answers: wait for it
        compared = shadow_comparison(rv.store, state)
        if compared and compared["rows_compared"] >= 8 * BATCH:
            break
        time.sleep(0.1)
    assert compared is not None
    diff = compared["probability_difference"] or {}
    demo.view.say(
        f"In shadow it scored {compared['rows_compared']:,} customers beside {version.ref}, "
        f"answering none: labels agree on {compared['label_agreement'] or 0:.1%}, "
        f"probabilities differ by {diff.get('mean', 0):.3f} on average "
        f"(p95 {diff.get('p95', 0):.3f})."
    )

    canary = rv.deployments.deploy(
        ROLLOUT, new.ref, rollout=True, min_step_rows=200, min_step_seconds=1.0, actor="demo",
        reason="shadow looks right",
    )  # fmt: skip
    # counted from when the server routes by it: until then it still shadows
    wait_serving(server.url, [version.ref, new.ref], revision=canary.revision)
    steps = _roll_out(demo, traffic, new.ref)
    demo.view.show(
        table(
            f"Canary of {new.ref} by {CHURN_ID}, step by step",
            ["step", "weight", "customers", f"answered by {new.ref}", "then"],
            steps,
        )
    )
    final = rv.deployments.get(ROLLOUT)
    demo.view.say(outcome(rv, new.ref, version.ref))
    demo.summary["rollout"] = {
        "challenger": new.ref,
        "champion_after": final.model_ref,
        "steps": len(steps),
        "requests_failed": traffic.failed,
        "shadow_rows_compared": compared["rows_compared"],
        "steps_by_weight": demo.summary.pop("rollout_steps", []),
    }


def outcome(rv: Relevo, new: str, old: str) -> str:
    """What became of the rollout of `new` over `old`: promoted, or rolled back and why (a
    gate can fail on a machine too busy for the latency gate: said as it is)."""
    final = rv.deployments.get(ROLLOUT)
    if final.model_ref == new:
        return f"Every gate passed: [bold]{new}[/] is the champion; {old} is kept for a rollback."
    event = rv.deployments.history(ROLLOUT)[-1]
    return (
        f"[bold red]{new} was rolled back[/] by {event.actor}: {event.reason}. "
        f"{final.model_ref} stays the champion."
    )


def _roll_out(demo: Demo, traffic: Traffic, ref: str) -> list[list[str]]:
    """Send traffic until the gates have promoted `ref`; one table row per step."""
    rv, url = demo.rv, need(demo.server, "serve").url
    rows: list[list[str]] = []
    state = rv.deployments.get(ROLLOUT)
    sent = answered = 0
    deadline = time.monotonic() + DEADLINE_S
    while state.has_challenger:
        if time.monotonic() > deadline:
            raise UnavailableError(f"the rollout of {ref} did not finish in {DEADLINE_S:.0f} s")
        got = traffic.send(BATCH)
        sent, answered = sent + BATCH, answered + got[ref]
        now = rv.deployments.get(ROLLOUT)
        if now.revision != state.revision:
            event = rv.deployments.history(ROLLOUT)[-1]
            share = f"{answered:,} ({answered / sent:.1%})"
            rows.append(
                [f"{state.step + 1}", f"{state.weight:.0%}", f"{sent:,}", share,
                 f"{event.action} by {event.actor}: {event.reason}"]
            )  # fmt: skip
            demo.summary.setdefault("rollout_steps", []).append(
                {"weight": state.weight, "customers": sent, "answered_by_challenger": answered}
            )
            sent = answered = 0
            state = now
            if state.has_challenger:  # the next step counts from when the server routes by it
                wait_serving(url, [state.model_ref, ref], revision=state.revision)
    return rows


CHAPTER = Chapter(
    key="replace",
    title="Replace the model safely",
    why="A new model runs in shadow, then answers a growing share of customers while its "
    "gates watch it, and is promoted.",
    run=run,
)
