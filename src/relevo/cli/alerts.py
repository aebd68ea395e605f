"""`relevo alerts` (firing alerts, `rules`, `silence`, `silences`, `evaluate`) and
`relevo monitor DEPLOYMENT` (per-deployment monitoring settings): docs/alerts.md."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import typer

from relevo.cli.output import console, fmt, handle_errors, print_json, table
from relevo.cli.state import state
from relevo.errors import InvalidInputError, Problem
from relevo.monitoring.alerts import config
from relevo.monitoring.alerts.prometheus import prometheus_rules
from relevo.monitoring.alerts.service import AlertService
from relevo.monitoring.alerts.state import Alert

app = typer.Typer(
    help="Alerts: what fires now, the rules, silences, evaluation on demand.",
    no_args_is_help=False,
)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str) -> float:
    """Seconds from `90s`, `30m`, `2h`, `1d`, `1w` (or a plain number of seconds)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not found:
        raise InvalidInputError(
            f"invalid --for {text!r}", [Problem("a duration like 30m, 2h or 1d", option="for")]
        )
    return float(found[1]) * _UNITS[found[2] or "s"]


def service() -> AlertService:
    return AlertService(state.relevo())


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%m-%d %H:%M")


def show_alerts(found: list[Alert], title: str) -> None:
    rows = [
        [
            a.deployment or "(server)",
            a.rule + (f" [{a.subject}]" if a.subject else ""),
            a.state + (" (silenced)" if a.silenced else ""),
            a.severity,
            _when(a.started_at),
            a.message,
        ]
        for a in found
    ]
    console.print(table(title, ["deployment", "rule", "state", "severity", "since", "message"],
                        rows))  # fmt: skip


@app.callback(invoke_without_command=True)
@handle_errors
def alerts(
    ctx: typer.Context,
    deployment: str | None = typer.Option(None, "--deployment", "-d", help="Only this one."),
    every: bool = typer.Option(False, "--all", help="Every incident kept, resolved ones too."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The firing alerts (with --all, every incident kept), newest first."""
    if ctx.invoked_subcommand is not None:
        return
    found = service().list(deployment, all_states=every)
    if json_out:
        print_json([a.to_dict() for a in found])
        return
    if not found:
        console.print("No alert fires." if not every else "No alert has fired yet.")
        return
    show_alerts(found, "Alerts" if every else "Firing alerts")


@app.command("rules")
@handle_errors
def rules(
    deployment: str | None = typer.Option(
        None, "--deployment", "-d", help="This deployment's settings (default: the defaults)."
    ),
    prometheus: bool = typer.Option(
        False, "--prometheus", help="Print equivalent Prometheus alerting rules (YAML)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The alert rules with their settings."""
    rv = state.relevo()
    found = AlertService(rv).rules(deployment)
    if prometheus:
        typer.echo(prometheus_rules(found, rv.settings.monitor_interval_s or 60.0), nl=False)
        return
    if json_out:
        print_json([r.to_dict() for r in found])
        return
    rows = []
    for r in found:
        params = ", ".join(f"{k}={v:g}" for k, v in r.params.items())
        rows.append(
            [r.name, "on" if r.enabled else "off", f"{r.fire_after} of {r.window}",
             str(r.clear_after), r.severity, params]
        )  # fmt: skip
    title = f"Alert rules of {deployment}" if deployment else "Alert rules (defaults)"
    console.print(table(title, ["rule", "", "fires", "clears", "severity", "settings"], rows))


@app.command("silence")
@handle_errors
def silence(
    deployment: str | None = typer.Option(None, "--deployment", "-d", help="Match this one."),
    rule: str | None = typer.Option(None, "--rule", help="Match this rule."),
    subject: str | None = typer.Option(None, "--subject", help="Match this subject."),
    for_: str | None = typer.Option(None, "--for", help="How long, e.g. 30m, 2h, 1d."),
    until: str | None = typer.Option(None, "--until", help="Until this ISO time (UTC if bare)."),
    reason: str | None = typer.Option(None, "--reason", help="Why, for the record."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Keep matching alerts quiet for a while: still evaluated and listed, never notified."""
    end = None
    if until is not None:
        try:
            end = datetime.fromisoformat(until.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInputError(
                f"invalid --until {until!r}",
                [Problem("an ISO time like 2026-12-01T08:00", option="until")],
            ) from None
        if end.tzinfo is None:
            end = end.replace(tzinfo=UTC)
    made = service().silence(
        deployment=deployment,
        rule=rule,
        subject=subject,
        until=end,
        duration_s=duration(for_) if for_ is not None else None,
        reason=reason,
    )
    if json_out:
        print_json(made.to_dict())
        return
    what = ", ".join(
        f"{k} {v}"
        for k, v in (("deployment", deployment), ("rule", rule), ("subject", subject))
        if v
    )
    console.print(f"Silenced {what} until {made.until.isoformat(timespec='seconds')}.")


@app.command("silences")
@handle_errors
def silences(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The silences in force."""
    found = service().silences()
    if json_out:
        print_json([s.to_dict() for s in found])
        return
    if not found:
        console.print("No silence in force.")
        return
    rows = [
        [s.id, s.deployment or "*", s.rule or "*", s.subject or "*",
         s.until.isoformat(timespec="minutes"), s.reason or ""]
        for s in found
    ]  # fmt: skip
    console.print(table("Silences", ["id", "deployment", "rule", "subject", "until", "why"], rows))


@app.command("evaluate")
@handle_errors
def evaluate(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Evaluate every deployment's rules now; notifications go out before it returns."""
    svc = service()
    report = svc.evaluate()
    svc.dispatcher.close(timeout_s=30.0)
    if json_out:
        print_json(report.to_dict())
        return
    console.print(
        f"Evaluated {report.deployments} deployment(s), {report.signals} signal(s): "
        f"{len(report.started)} alert(s) started, {len(report.resolved)} resolved, "
        f"{len(report.still_firing)} still firing; "
        f"{len(report.notifications)} notification(s) sent."
    )
    for found, title in ((report.started, "Started"), (report.resolved, "Resolved")):
        if found:
            show_alerts(list(found), title)
    for error in report.errors:
        console.print(f"[yellow]provider failed:[/] {error}", highlight=False)


@handle_errors
def monitor(
    deployment: str = typer.Argument(..., help="Deployment name."),
    assignments: list[str] = typer.Option(
        [],
        "--set",
        help="SECTION.KEY=VALUE, e.g. alerts.latency_p99.threshold_ms=800 "
        "(repeatable; VALUE null removes the key).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """DEPLOYMENT's monitoring settings (sections drift, alerts, feedback); --set changes them."""
    rv = state.relevo()
    stored = (
        config.update(rv, deployment, assignments) if assignments else config.get(rv, deployment)
    )
    rules = AlertService(rv).rules(deployment)
    if json_out:
        print_json(
            {"deployment": deployment, "monitoring": stored,
             "rules": [r.to_dict() for r in rules]}
        )  # fmt: skip
        return
    rows: list[list[Any]] = []
    for section, values in stored.items():
        for key, value in _flatten(values):
            rows.append([f"{section}.{key}", fmt(value)])
    if rows:
        console.print(table(f"Monitoring settings of {deployment}", ["setting", "value"], rows))
    else:
        console.print(f"{deployment} uses the default monitoring settings.")
    changed = [r for r in rules if not r.enabled]
    if changed:
        console.print("Rules off: " + ", ".join(r.name for r in changed))


def _flatten(values: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if not isinstance(values, dict):
        return [(prefix, values)]
    out: list[tuple[str, Any]] = []
    for key, value in values.items():
        out.extend(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="alerts")
    root.command("monitor")(monitor)
