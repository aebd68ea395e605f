"""`relevo drift DEPLOYMENT`: data and prediction drift of a deployment's recent traffic
(docs/monitoring.md, "Drift")."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from relevo.cli.output import console, handle_errors, print_json, table
from relevo.cli.state import state
from relevo.errors import InvalidInputError
from relevo.monitoring.drift import DriftReport, FeatureDrift
from relevo.monitoring.service import BASELINES, MonitoringService
from relevo.monitoring.timespan import parse_time


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return "inf" if value == float("inf") else f"{value:.3g}"


def _row(f: FeatureDrift) -> list[str]:
    verdict = "n/a" if not f.evaluable else ("DRIFT" if f.drifted else "no")
    statistic = _num(f.statistic)
    if f.p_value is not None:
        statistic += f" (p {_num(f.p_value)})"
    rule = "p < " if f.is_p_value else ">= "
    return [f.feature, f.method, statistic, rule + _num(f.threshold), verdict, f.note]


def show(report: DriftReport) -> None:
    """The report as Rich tables: one row per feature, then the output and the inputs
    together."""
    when = ""
    if report.since is not None:
        until = report.until or datetime.now(UTC)
        end = f"{until:%H:%M}" if until.date() == report.since.date() else f"{until:%Y-%m-%d %H:%M}"
        when = f" {report.since:%Y-%m-%d %H:%M} to {end} UTC"
    title = f"Drift of {report.deployment} ({report.model}){when} against the {report.baseline}"
    rows = [_row(f) for f in report.features]
    extra = [c for c in (report.prediction, report.multivariate) if c is not None]
    rows += [_row(c) for c in extra]
    columns = ["feature", "test", "statistic", "threshold", "drifted", "note"]
    console.print(table(title, columns, rows))
    share = report.drifted_share
    judged = len(report.evaluable_features)
    if judged == 0:
        console.print("No feature could be judged: too few values in the window.")
        return
    verdict = "[bold red]dataset drift[/]" if report.dataset_drift else "no dataset drift"
    names = ", ".join(report.drifted_features) or "none"
    console.print(
        f"{len(report.drifted_features)} of {judged} features drifted ({share:.0%}; dataset "
        f"drift from {report.dataset_share:.0%}): {verdict}. Drifted: {names}.",
        highlight=False,
    )


@handle_errors
def drift(
    deployment: str = typer.Argument(..., help="Deployment name."),
    since: str = typer.Option("24h", "--since", help="Window start: 30m, 24h, 7d or ISO time."),
    until: str | None = typer.Option(None, "--until", help="Window end (default: now)."),
    model: str | None = typer.Option(
        None, "--model", help="NAME:VERSION (default: the model that answered most rows)."
    ),
    baseline: str = typer.Option(
        "reference", "--baseline", help="reference, previous (window) or seasonal (a week ago)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    html: Path | None = typer.Option(None, "--html", help="Also write an HTML report here."),
) -> None:
    """Data and prediction drift of DEPLOYMENT over a window against a baseline. Exits 0
    whether or not anything drifted (read --json's dataset_drift in scripts)."""
    if baseline not in BASELINES:
        raise InvalidInputError(
            f"--baseline must be one of {', '.join(BASELINES)}, not {baseline!r}"
        )
    now = datetime.now(UTC)
    start = parse_time(since, now, "since")
    end = parse_time(until, now, "until") if until else now
    report = MonitoringService(state.relevo()).drift(deployment, start, end, model, baseline)
    if html is not None:
        try:
            html.write_text(report.to_html(), encoding="utf-8")
        except OSError as exc:
            raise InvalidInputError(
                f"cannot write the HTML report to {html}: {exc.strerror}"
            ) from exc
    if json_out:
        print_json(report.to_dict())
        return
    show(report)
    if html is not None:
        console.print(f"HTML report: {html}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("drift")(drift)
