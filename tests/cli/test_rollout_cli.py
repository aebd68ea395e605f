"""`relevo deploy --strategy/--weight/--steps`, `promote`, `rollback`, `history`, `status`
and `deployments` as a user runs them."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime, timedelta

import joblib
from sklearn.base import clone
from typer.testing import CliRunner

from relevo.cli.main import app
from relevo.cli.state import state
from relevo.datasets import CHURN_FEATURES, CHURN_TARGET


def _register(cli, name, model, reference) -> None:
    result = cli("models", "register", name, model, "--reference", reference, "--target", "churned")
    assert result.exit_code == 0, result.output


def _two_models(cli, churn_files, churn_pipeline, churn_frame, tmp_path) -> None:
    _register(cli, "churn", churn_files.model, churn_files.reference)
    other = clone(churn_pipeline).set_params(model__C=0.01)
    other.fit(churn_frame[CHURN_FEATURES], churn_frame[CHURN_TARGET])
    path = tmp_path / "small.joblib"
    joblib.dump(other, path)
    _register(cli, "churn-small", path, churn_files.reference)
    assert cli("deploy", "churn", "churn:1", "--key", "customer_id").exit_code == 0


def test_canary_promote_rollback_and_the_audit_trail(
    cli, churn_files, churn_pipeline, churn_frame, tmp_path
):
    _two_models(cli, churn_files, churn_pipeline, churn_frame, tmp_path)
    canary = cli("deploy", "churn", "churn-small:1", "--weight", "0.1", "--reason", "smaller C")
    assert canary.exit_code == 0, canary.output
    assert "churn-small:1 answers 10% of rows beside churn:1" in canary.stdout

    status = json.loads(cli("status", "churn", "--json").stdout)
    assert status["strategy"] == "canary" and status["challenger"] == "churn-small:1"
    assert status["weight"] == 0.1
    assert [m["role"] for m in status["models"]] == ["champion", "challenger"]
    table = cli("status", "churn").stdout
    assert "canary" in table and "10%" in table and "error rate" in table

    promoted = cli("promote", "churn")
    assert promoted.exit_code == 0 and "now serves churn-small:1" in promoted.stdout
    back = cli("rollback", "churn", "--reason", "AUC lower")
    assert back.exit_code == 0 and "now serves churn:1" in back.stdout

    events = json.loads(cli("history", "churn", "--json").stdout)
    assert [e["action"] for e in events] == ["deploy", "deploy", "promote", "rollback"]
    me = f"cli:{getpass.getuser()}"
    assert all(e["actor"] == me for e in events)
    assert events[1]["reason"] == "smaller C" and events[3]["reason"] == "AUC lower"
    assert events[3]["state"]["model"] == "churn:1"
    history = cli("history", "churn").stdout
    assert "promote" in history and "AUC lower" in history and "churn-small:1" in history

    listing = cli("deployments").stdout
    assert "churn" in listing and "basic" in listing
    assert json.loads(cli("status", "--json").stdout)[0]["name"] == "churn"


def test_progressive_rollout_and_shadow_from_the_cli(
    cli, churn_files, churn_pipeline, churn_frame, tmp_path
):
    _two_models(cli, churn_files, churn_pipeline, churn_frame, tmp_path)
    steps = cli("deploy", "churn", "churn-small:1", "--steps", "10,50,100", "--manual")
    assert steps.exit_code == 0, steps.output
    assert "step 1 of 3" in steps.stdout
    assert "step 2 of 3" in cli("promote", "churn").stdout
    table = cli("status", "churn").stdout
    assert "2 of 3 (10%, 50%, 100%)" in table
    shadow = cli("deploy", "churn", "churn-small:1", "--strategy", "shadow", "--mirror", "0.2")
    assert shadow.exit_code == 0 and "scores 20% of rows in shadow" in shadow.stdout


def test_rollout_mistakes_are_one_clear_line(
    cli, churn_files, churn_pipeline, churn_frame, tmp_path
):
    _two_models(cli, churn_files, churn_pipeline, churn_frame, tmp_path)
    wrong = cli("deploy", "churn", "churn-small:1", "--strategy", "blue-green")
    assert wrong.exit_code != 0 and "strategy" in wrong.stderr and "Traceback" not in wrong.output
    steps = cli("deploy", "churn", "churn-small:1", "--steps", "5,fifty")
    assert steps.exit_code != 0 and "steps" in steps.stderr
    nothing = cli("promote", "churn")
    assert nothing.exit_code != 0 and "no challenger" in nothing.stderr
    missing = cli("history", "nope")
    assert missing.exit_code != 0 and "not found" in missing.stderr


def test_the_deployment_list_fits_80_columns_and_shows_a_challenger_only_when_there_is_one(
    cli, churn_files, churn_pipeline, churn_frame, tmp_path, relevo_home, database_url
):
    from typer.testing import CliRunner

    from relevo.cli.main import app
    from relevo.cli.state import state

    _two_models(cli, churn_files, churn_pipeline, churn_frame, tmp_path)
    for name in ("churn-rollout", "churn-quiet-hours"):
        assert cli("deploy", name, "churn-small:1", "--key", "customer_id").exit_code == 0

    def listing() -> str:
        argv = ["--home", str(relevo_home), "--database-url", database_url, "deployments"]
        try:
            result = CliRunner().invoke(app, argv, env={"COLUMNS": "80", "LINES": "50"})
        finally:
            state.close()
        assert result.exit_code == 0, result.output
        return result.stdout

    basic = listing()
    assert max(len(line) for line in basic.splitlines()) <= 80
    assert "challenger" not in basic  # "-" on every row: left out
    # every name and key whole on one line (nothing folded at 80 columns)
    for word in ("churn-rollout", "churn-quiet-hours", "customer_id", "churn-small:1"):
        assert word in basic, basic

    assert cli("deploy", "churn", "churn-small:1", "--weight", "0.1").exit_code == 0
    canary = listing()
    assert max(len(line) for line in canary.splitlines()) <= 80
    assert "challenger" in canary and "canary 10%" in canary


def test_a_name_deployed_for_the_first_time_is_said_to_be_new_beside_the_others(cli, churn_files):
    _register(cli, "churn", churn_files.model, churn_files.reference)
    first = cli("deploy", "churn", "churn:1")
    assert first.exit_code == 0, first.output
    assert "New deployment churn serves churn:1 (revision 1)" in first.stdout
    assert "Other deployments" not in first.stdout
    typo = cli("deploy", "chrun", "churn")  # NAME alone: its latest version
    assert typo.exit_code == 0, typo.output
    assert "New deployment chrun serves churn:1" in typo.stdout
    assert "Other deployments: churn." in typo.stdout
    again = cli("deploy", "churn", "churn:1")
    assert "Deployment churn now serves churn:1 (revision 2)" in again.stdout
    assert "New" not in again.stdout and "Other deployments" not in again.stdout


def test_the_history_keeps_each_time_on_one_line_at_80_columns(
    cli, churn_files, churn_pipeline, churn_frame, tmp_path, relevo_home, database_url
):
    _two_models(cli, churn_files, churn_pipeline, churn_frame, tmp_path)
    why = "the smaller model answers a tenth of the customers while its gates watch it"
    assert (
        cli("deploy", "churn", "churn-small:1", "--weight", "0.1", "--reason", why).exit_code == 0
    )
    assert cli("promote", "churn", "--reason", "its error rate held").exit_code == 0
    events = json.loads(cli("history", "churn", "--json").stdout)
    args = ["--home", str(relevo_home), "--database-url", database_url, "history", "churn"]
    try:
        out = CliRunner().invoke(app, args, env={"COLUMNS": "80"}).stdout
    finally:
        state.close()
    assert max(map(len, out.splitlines())) <= 80
    for e in events:  # stored in UTC, shown as its date and time: the time never split
        assert e["created_at"][11:19] in out, out


def test_a_swap_of_a_deployment_running_a_canary_says_the_canary_was_withdrawn(
    cli, churn_files, churn_pipeline, churn_frame, tmp_path
):
    _two_models(cli, churn_files, churn_pipeline, churn_frame, tmp_path)
    assert cli("deploy", "churn", "churn-small:1", "--steps", "5,25,50,100").exit_code == 0
    rekey = cli("deploy", "churn", "churn:1", "--key", "account_id")
    assert rekey.exit_code == 0, rekey.output
    assert "Its canary challenger churn-small:1 was withdrawn." in rekey.stdout
    status = json.loads(cli("status", "churn", "--json").stdout)
    assert status["strategy"] == "basic" and status["challenger"] is None
    last = json.loads(cli("history", "churn", "--json").stdout)[-1]
    assert last["action"] == "deploy"
    assert last["reason"] == "withdrew the canary challenger churn-small:1"


def test_a_mirror_on_a_basic_swap_and_an_empty_key_are_refused(
    cli, churn_files, churn_pipeline, churn_frame, tmp_path
):
    _two_models(cli, churn_files, churn_pipeline, churn_frame, tmp_path)
    swap = cli("deploy", "churn", "churn-small:1", "--strategy", "basic", "--mirror", "0")
    assert swap.exit_code == 2 and "mirror" in swap.stderr, swap.output
    empty_key = cli("deploy", "churn", "churn:1", "--key", "")
    assert empty_key.exit_code == 2 and "key" in empty_key.stderr, empty_key.output
    assert json.loads(cli("status", "churn", "--json").stdout)["model"] == "churn:1"


def test_promote_with_the_revision_seen_is_refused_once_the_deployment_moved(
    cli, churn_files, churn_pipeline, churn_frame, tmp_path
):
    _two_models(cli, churn_files, churn_pipeline, churn_frame, tmp_path)
    assert (
        cli("deploy", "churn", "churn-small:1", "--steps", "5,25,50,100", "--manual").exit_code == 0
    )
    seen = json.loads(cli("status", "churn", "--json").stdout)["revision"]
    first = cli("promote", "churn", "--revision", str(seen))
    assert first.exit_code == 0, first.output
    second = cli("promote", "churn", "--revision", str(seen))  # a second operator, same view
    assert second.exit_code == 4, second.output
    said = " ".join(second.stderr.split())
    assert f"is at revision {seen + 1}, not {seen} (last: advance by cli:" in said
    assert "promote again if still wanted" in said
    status = json.loads(cli("status", "churn", "--json").stdout)
    assert status["weight"] == 0.25  # one step from 5 %, not two


def test_a_canary_or_shadow_under_one_percent_is_shown_as_set_not_as_zero(
    cli, churn_files, churn_pipeline, churn_frame, tmp_path
):
    _two_models(cli, churn_files, churn_pipeline, churn_frame, tmp_path)
    canary = cli("deploy", "churn", "churn-small:1", "--weight", "0.005")
    assert canary.exit_code == 0, canary.output
    assert "churn-small:1 answers 0.5% of rows beside churn:1" in canary.stdout
    assert "0.5%" in cli("status", "churn").stdout
    assert "canary 0.5%" in cli("deployments").stdout
    assert "(canary 0.5%)" in " ".join(cli("history", "churn").stdout.split())
    shadow = cli("deploy", "churn", "churn-small:1", "--strategy", "shadow", "--mirror", "0.125")
    assert "scores 12.5% of rows in shadow" in shadow.stdout
    assert "shadow 12.5%" in cli("deployments").stdout


def test_a_tiny_canary_is_shown_as_a_plain_percentage_not_in_exponent_notation(
    cli, churn_files, churn_pipeline, churn_frame, tmp_path
):
    """A canary at 1e-7 of rows is 0.00001 % (it was shown "1e-05%"), in the deploy's answer,
    the status, the list, the history and the audit trail of the deploy that replaces it."""
    _two_models(cli, churn_files, churn_pipeline, churn_frame, tmp_path)
    canary = cli("deploy", "churn", "churn-small:1", "--weight", "1e-7")
    assert canary.exit_code == 0, canary.output
    assert "churn-small:1 answers 0.00001% of rows beside churn:1" in canary.stdout
    status = cli("status", "churn").stdout
    assert "0.00001%" in status and "e-0" not in status
    assert "canary 0.00001%" in cli("deployments").stdout
    assert "(canary 0.00001%)" in " ".join(cli("history", "churn").stdout.split())
    shadow = cli("deploy", "churn", "churn-small:1", "--strategy", "shadow", "--mirror", "2.5e-6")
    assert shadow.exit_code == 0, shadow.output
    said = " ".join(shadow.stdout.split())
    assert "scores 0.00025% of rows in shadow" in said
    assert "It replaced the canary challenger churn-small:1 at 0.00001%" in said
    last = json.loads(cli("history", "churn", "--json").stdout)[-1]
    assert last["reason"] == "replaced the canary challenger churn-small:1 at 0.00001%"


def test_a_rollouts_step_and_bake_are_set_per_deployment_from_the_cli(
    cli, churn_files, churn_pipeline, churn_frame, tmp_path
):
    _two_models(cli, churn_files, churn_pipeline, churn_frame, tmp_path)
    args = ("--rollout", "--min-step-rows", "2000", "--min-step-seconds", "600")
    canary = cli("deploy", "churn", "churn-small:1", *args, "--bake-seconds", "7200", "--json")
    assert canary.exit_code == 0, canary.output
    state = json.loads(cli("status", "churn", "--json").stdout)
    assert (state["min_step_rows"], state["min_step_seconds"], state["bake_seconds"]) == (
        2000,
        600.0,
        7200.0,
    )
    for option, value in (("--min-step-seconds", "-1"), ("--bake-seconds", "nan")):
        refused = cli("deploy", "churn", "churn-small:1", "--rollout", option, value)
        assert refused.exit_code == 2 and option[2:].replace("-", "_") in refused.stderr


def test_a_deploy_over_a_running_canary_says_what_it_replaced(
    cli, churn_files, churn_pipeline, churn_frame, tmp_path
):
    _two_models(cli, churn_files, churn_pipeline, churn_frame, tmp_path)
    assert (
        cli("deploy", "churn", "churn-small:1", "--steps", "5,25,50,100", "--manual").exit_code == 0
    )
    assert cli("promote", "churn").exit_code == 0
    shadow = cli("deploy", "churn", "churn-small:1", "--strategy", "shadow", "--reason", "hold")
    assert shadow.exit_code == 0, shadow.output
    said = " ".join(shadow.stdout.split())
    assert "It replaced the canary challenger churn-small:1 at 25% (step 2 of 4)" in said
    last = json.loads(cli("history", "churn", "--json").stdout)[-1]
    assert (
        last["reason"] == "hold; replaced the canary challenger churn-small:1 at 25% (step 2 of 4)"
    )


def test_status_says_what_the_gates_say_now_and_why_a_rollout_holds(
    cli, churn_files, churn_pipeline, churn_frame, tmp_path
):
    _two_models(cli, churn_files, churn_pipeline, churn_frame, tmp_path)
    assert json.loads(cli("status", "churn", "--json").stdout)["decision"] is None  # no challenger
    assert cli("deploy", "churn", "churn-small:1", "--rollout").exit_code == 0
    decision = json.loads(cli("status", "churn", "--json").stdout)["decision"]
    assert decision["move"] == "hold"
    verdicts = {g["gate"]: g["verdict"] for g in decision["gates"]}
    assert verdicts == {
        "error_rate": "inconclusive",
        "latency_p99": "inconclusive",
        "drift": "inconclusive",
        "label_metric": "pass",
    }
    table = " ".join(cli("status", "churn").stdout.split())
    assert "Gates now" in table and "Next move: hold (gate error_rate inconclusive" in table


def test_status_during_the_bake_period_says_it_bakes_and_until_when(
    cli, churn_files, churn_pipeline, churn_frame, tmp_path
):
    """After a promotion, `decision` was null: nothing said the deployment was baking, nor
    until when an alert would roll it back."""
    _two_models(cli, churn_files, churn_pipeline, churn_frame, tmp_path)
    assert cli("deploy", "churn", "churn-small:1", "--weight", "0.1").exit_code == 0
    assert cli("promote", "churn").exit_code == 0
    status = json.loads(cli("status", "churn", "--json").stdout)
    until = datetime.fromisoformat(status["promoted_at"]) + timedelta(
        seconds=status["bake_seconds"]
    )
    decision = status["decision"]
    assert decision["move"] == "none" and decision["gates"] == []
    assert datetime.fromisoformat(decision["bake_until"]) == until
    said = f"baking until {until.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    assert decision["reason"].startswith(said) and decision["reason"].endswith(
        "rolls back to churn:1"
    )
    table = " ".join(cli("status", "churn").stdout.split())
    assert f"Next move: none ({said}" in table and "Gates now" not in table

    # a swap without a bake: nothing bakes, nothing to say
    assert cli("deploy", "churn", "churn:1", "--bake-seconds", "0").exit_code == 0
    assert json.loads(cli("status", "churn", "--json").stdout)["decision"] is None
