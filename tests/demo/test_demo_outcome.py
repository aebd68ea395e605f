"""What the demo says of its rollout: the promotion it saw, or the rollback and its reason
(never "every gate passed" for a challenger a gate rolled back)."""

from __future__ import annotations

import pandas as pd
from sklearn.pipeline import Pipeline

import relevo
from relevo.demo.chapters.replace import outcome
from relevo.demo.rollout import ROLLOUT


def test_the_outcome_names_a_rollback_and_its_reason(
    rv: relevo.Relevo, churn_pipeline: Pipeline, churn_frame: pd.DataFrame
) -> None:
    old = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    new = rv.registry.register("churn-gbm", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy(ROLLOUT, old.ref, key="customer_id")
    rv.deployments.deploy(ROLLOUT, new.ref, rollout=True)
    rv.deployments.rollback(ROLLOUT, actor="gate", reason="latency_p99: p99 61.0 ms over 500 rows")
    said = outcome(rv, new.ref, old.ref)
    assert said.startswith(f"[bold red]{new.ref} was rolled back[/] by gate: latency_p99")
    assert f"{old.ref} stays the champion" in said and "Every gate passed" not in said

    rv.deployments.deploy(ROLLOUT, new.ref, strategy="canary", weight=0.5)
    rv.deployments.promote(ROLLOUT, actor="demo")  # a canary without steps: promoted whole
    assert rv.deployments.get(ROLLOUT).model_ref == new.ref
    assert outcome(rv, new.ref, old.ref).startswith(f"Every gate passed: [bold]{new.ref}[/]")
