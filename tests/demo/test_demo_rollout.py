"""The demo's replacement chapters: what they report is what the store holds."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

import relevo
from relevo.cli.main import app
from relevo.cli.state import state
from relevo.demo.rollout import ROLLOUT


def test_the_new_model_is_promoted_by_its_gates_and_the_broken_one_rolled_back(tmp_path: Path):
    home = tmp_path / "home"
    try:
        result = CliRunner().invoke(
            app,
            ["demo", "--customers", "300", "--json", "--home", str(home)],
            env={"COLUMNS": "100"},
        )
    finally:
        state.close()
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    rollout, broken = summary["rollout"], summary["broken"]
    assert rollout["requests_failed"] == 0 and broken["requests_failed"] == 0
    assert rollout["champion_after"] == rollout["challenger"] == "churn-gbm:1"
    assert rollout["steps"] == 4 and rollout["shadow_rows_compared"] >= 2000
    assert broken["rolled_back_by"] == "gate" and "error_rate" in broken["reason"]
    # each step's table row counts the customers answered at that step's weight (counted
    # from when the server routed by it: the first step once counted shadow-time rows too)
    steps = rollout["steps_by_weight"]
    assert [s["weight"] for s in steps] == [0.05, 0.25, 0.5, 1.0]
    for step in steps:
        n, weight = step["customers"], step["weight"]
        share = step["answered_by_challenger"] / n
        assert abs(share - weight) <= 4 * (weight * (1 - weight) / n) ** 0.5 + 0.005, step

    with relevo.Relevo(home=home) as rv:
        events = rv.deployments.history(ROLLOUT)
        by_gate = [(e.action, e.actor) for e in events if e.actor == "gate"]
        assert by_gate == [("advance", "gate")] * 3 + [("promote", "gate"), ("rollback", "gate")]
        assert rv.deployments.get(ROLLOUT).model_ref == "churn-gbm:1"
        assert rv.store.shadows.count(ROLLOUT) >= rollout["shadow_rows_compared"]
        # the first chapters' deployment is untouched by the replacement chapters
        assert rv.deployments.get("churn").model_ref == "churn:1"
