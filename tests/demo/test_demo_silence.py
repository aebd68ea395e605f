"""The demo's silence chapter: what it reports is what the store holds, one incident fired and
resolved, and its table fits 80 columns."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

import relevo
from relevo.cli.main import app
from relevo.cli.state import state
from relevo.demo.chapters.silence import QUIET


def test_traffic_stops_the_alert_fires_traffic_resumes_it_resolves(tmp_path: Path):
    home = tmp_path / "home"
    try:
        result = CliRunner().invoke(
            app, ["demo", "--customers", "200", "--home", str(home)], env={"COLUMNS": "80"}
        )
    finally:
        state.close()
    assert result.exit_code == 0, result.output
    chapter = result.stdout[result.stdout.index("When the predictions stop") :]
    chapter = chapter[: chapter.index("Summary")]
    assert all(len(line) <= 80 for line in chapter.splitlines())
    assert "no_predictions fired after" in chapter and "firing" in chapter

    with relevo.Relevo(home=home) as rv:
        alerts = [a for a in rv.store.alerts.list(QUIET, firing_only=False)]
        assert [(a.rule, a.subject, a.state, a.notified) for a in alerts] == [
            ("no_predictions", "", "resolved", True)
        ]
        assert "no predictions in the last 2 s" in alerts[0].message
        assert alerts[0].resolved_at > alerts[0].started_at
        # the first chapters' deployment is untouched
        assert rv.deployments.get("churn").model_ref == "churn:1"
