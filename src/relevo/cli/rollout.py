"""`relevo promote`, `rollback`, `history` and `deployments`, and the rollout part of `deploy`
and `status`: replacing a model safely from the command line (docs/deployments.md)."""

from __future__ import annotations

import getpass
from datetime import UTC
from typing import Any

import typer

from relevo.cli.deployments import show_all, status_data
from relevo.cli.output import console, fmt, handle_errors, print_json, share, table
from relevo.cli.state import state
from relevo.context import Relevo
from relevo.routing.deployment import Deployment


def actor() -> str:
    """Who acts, for the audit trail: `cli:<user>`."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment (a bare container)
        user = "unknown"
    return f"cli:{user}"


def describe(dep: Deployment) -> str:
    """One sentence on what a deployment now does (after deploy, promote or rollback)."""
    if dep.strategy == "shadow":
        return (
            f"Deployment [bold]{dep.name}[/]: {dep.model_ref} answers; {dep.challenger_ref} "
            f"scores {share(dep.mirror)} of rows in shadow (revision {dep.revision})."
        )
    if dep.strategy == "canary":
        plan = f"step {dep.step + 1} of {len(dep.steps)}" if dep.steps else "fixed weight"
        return (
            f"Deployment [bold]{dep.name}[/]: {dep.challenger_ref} answers {share(dep.weight)} of "
            f"rows beside {dep.model_ref} ({plan}, revision {dep.revision})."
        )
    if dep.revision == 1:  # a name never deployed before: perhaps a typo, so say it is new
        return (
            f"New deployment [bold]{dep.name}[/] serves [bold]{dep.model_ref}[/] (revision 1); "
            "running servers load it within seconds."
        )
    return (
        f"Deployment [bold]{dep.name}[/] now serves [bold]{dep.model_ref}[/] "
        f"(revision {dep.revision}); running servers switch within seconds."
    )


def show_status(rv: Relevo, name: str | None, json_out: bool) -> None:
    """`relevo status [DEPLOYMENT]`: one deployment in detail, or all of them."""
    if name is None:
        show_all(json_out)
        return
    dep = rv.deployments.get(name)
    data = status_data(rv, dep)
    if json_out:
        print_json(data)
        return
    fields: list[list[Any]] = [
        ["champion", dep.model_ref],
        ["strategy", dep.strategy],
        ["challenger", dep.challenger_ref or "(none)"],
    ]
    if dep.strategy == "canary":
        fields.append(["weight", share(dep.weight)])
        if dep.steps:
            plan = ", ".join(f"{s}%" for s in dep.steps)
            fields.append(["step", f"{dep.step + 1} of {len(dep.steps)} ({plan})"])
            fields.append(["manual", "yes" if dep.manual else "no"])
    if dep.strategy == "shadow":
        fields.append(["mirror", share(dep.mirror)])
    fields += [
        ["routing key", dep.key_column or "(none: random per row)"],
        ["previous champion", dep.previous_ref or ""],
        ["revision", dep.revision],
        ["updated", dep.updated_at.isoformat(timespec="seconds")],
        ["predictions logged", f"{data['predictions_logged']:,}"],
    ]
    console.print(table(f"Deployment {dep.name}", ["field", "value"], fields))
    console.print(
        table(
            "Per model" + (" (since the challenger was deployed)" if dep.has_challenger else ""),
            ["role", "model", "rows", "errors", "error rate", "p99 latency ms"],
            [
                [
                    a["role"],
                    a["model"],
                    f"{a['rows']:,}",
                    f"{a['errors']:,}",
                    "" if a["error_rate"] is None else f"{a['error_rate']:.2%}",
                    fmt(a["latency_p99_ms"]),
                ]
                for a in data["models"]
            ],
        )
    )

    if data["shadow"] is not None:
        show_shadow(data["shadow"])
    if data["decision"] is not None:
        show_decision(data["decision"])


def show_decision(decision: dict[str, Any]) -> None:
    """The gates' answers now, and the move they call for (or why the rollout holds; after a
    promotion, that it bakes and until when)."""
    if decision["gates"]:
        console.print(
            table(
                "Gates now",
                ["gate", "verdict", "detail"],
                [[g["gate"], g["verdict"], g["detail"]] for g in decision["gates"]],
            )
        )
    console.print(f"Next move: {decision['move']} ({decision['reason']})", highlight=False)


def show_shadow(c: dict[str, Any]) -> None:
    """The shadow comparison as a table."""

    def spread(d: dict[str, float] | None, digits: int = 3) -> str:
        if d is None:
            return ""
        return ", ".join(f"{k} {d[k]:.{digits}f}" for k in ("mean", "p50", "p95", "max"))

    agreement = c["label_agreement"]
    rate = c["shadow_error_rate"]
    console.print(
        table(
            f"Shadow {c['model']} against the champion",
            ["measure", "value"],
            [
                ["rows mirrored", f"{c['rows']:,}"],
                ["rows compared", f"{c['rows_compared']:,}"],
                ["label agreement", "" if agreement is None else f"{agreement:.1%}"],
                ["probability difference", spread(c["probability_difference"])],
                *(
                    [["value difference", spread(c["value_difference"])]]
                    if c.get("value_difference")
                    else []
                ),
                ["champion latency ms", spread(c["champion_latency_ms"], 2)],
                ["shadow latency ms", spread(c["shadow_latency_ms"], 2)],
                [
                    "shadow errors",
                    f"{c['shadow_errors']:,}" + ("" if rate is None else f" ({rate:.1%})"),
                ],
            ],
        )
    )


@handle_errors
def promote(
    deployment: str = typer.Argument(..., help="Deployment name."),
    reason: str | None = typer.Option(None, "--reason", help="Why, for the audit trail."),
    revision: int | None = typer.Option(
        None,
        "--revision",
        min=1,
        help="Only from this revision (the one `relevo status` showed you): refused if it moved.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Move DEPLOYMENT's rollout to its next step, or make the challenger the champion."""
    dep = state.relevo().deployments.promote(
        deployment, actor=actor(), reason=reason, revision=revision
    )
    if json_out:
        print_json(dep.to_dict())
        return
    console.print(describe(dep))


@handle_errors
def rollback(
    deployment: str = typer.Argument(..., help="Deployment name."),
    reason: str | None = typer.Option(None, "--reason", help="Why, for the audit trail."),
    revision: int | None = typer.Option(
        None,
        "--revision",
        min=1,
        help="Only from this revision (the one `relevo status` showed you): refused if it moved.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Drop DEPLOYMENT's challenger, or bring back the champion the last promotion replaced."""
    dep = state.relevo().deployments.rollback(
        deployment, actor=actor(), reason=reason, revision=revision
    )
    if json_out:
        print_json(dep.to_dict())
        return
    console.print(describe(dep))


@handle_errors
def history(
    deployment: str = typer.Argument(..., help="Deployment name."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """DEPLOYMENT's audit trail: every change, when, what, why and by whom."""
    events = state.relevo().deployments.history(deployment)
    if json_out:
        print_json([e.to_dict() for e in events])
        return
    rows = []
    for e in events:
        s = e.state
        serving = s.get("model", "")
        if s.get("challenger"):
            serving += f" + {s['challenger']} ({s.get('strategy')}"
            serving += f" {share(s.get('weight', 0))})" if s.get("strategy") == "canary" else ")"
        rows.append(
            [
                s.get("revision", ""),
                e.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                e.action,
                e.actor or "",
                serving,
                e.reason or "",
            ]
        )
    console.print(
        table(
            f"History of {deployment}",
            ["revision", "when (UTC)", "action", "by", "serving", "why"],
            rows,
        )
    )


def register(app: typer.Typer) -> None:
    app.command("promote")(promote)
    app.command("rollback")(rollback)
    app.command("history")(history)
