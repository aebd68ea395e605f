"""`relevo validate`: the pre-production gate from the command line (docs/validate.md).

Exit codes: 0 every check passed; 8 a check failed (the report says which); otherwise the
error's own code (2 bad input such as an unknown metric or a missing file, 3 an unknown model,
5 an artifact whose sha256 changed, 6 the store or the bucket unreachable).
"""

from __future__ import annotations

from pathlib import Path

import typer

from relevo.cli.output import console, fmt, handle_errors, print_json, table
from relevo.cli.state import state
from relevo.validation import Bound, ValidationReport, validate_version
from relevo.validation.sample import read_sample

#: the exit code of a validation that ran and failed a check
VALIDATION_FAILED = 8
#: problems the human report lists (the check's detail names 3; --json gives up to 100)
SHOWN_PROBLEMS = 10


@handle_errors
def validate(
    model: str = typer.Argument(..., help="NAME:VERSION to test."),
    data: Path = typer.Option(..., "--data", help="Sample rows (.csv, .parquet), with labels."),
    target: str | None = typer.Option(
        None,
        "--target",
        help="Label column (default: the version's registered target, if the sample has it).",
    ),
    minimum: list[str] = typer.Option(
        [], "--min", help="A floor, METRIC=VALUE (repeatable), e.g. --min roc_auc=0.8."
    ),
    maximum: list[str] = typer.Option(
        [], "--max", help="A ceiling, METRIC=VALUE (repeatable), e.g. --max log_loss=0.5."
    ),
    max_latency_ms: float | None = typer.Option(
        None, "--max-latency-ms", min=0, help="Budget for the p99 of 1-row and batch calls."
    ),
    against: str | None = typer.Option(
        None, "--against", help="NAME:VERSION this one must not be worse than, same rows."
    ),
    tolerance: float = typer.Option(
        0.01, "--tolerance", min=0, help="How much worse than --against a metric may be."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Test a model version on a sample before production: signature, metric limits, latency
    and (with --against) no worse than another version; exit code 8 when a check fails."""
    bounds = [Bound.parse(t, upper=False) for t in minimum]
    bounds += [Bound.parse(t, upper=True) for t in maximum]
    relevo = state.relevo()
    sample = read_sample(relevo, data, [model, *([against] if against else [])])
    report = validate_version(
        relevo,
        model,
        sample,
        target=target,
        bounds=bounds,
        max_latency_ms=max_latency_ms,
        against=against,
        tolerance=tolerance,
        sample_name=f"the sample {data}",
    )
    if json_out:
        print_json(report.to_dict())
    else:
        _show(report)
    if not report.passed:
        raise typer.Exit(VALIDATION_FAILED)


def _show(report: ValidationReport) -> None:
    verdict = "[bold green]PASSED[/]" if report.passed else "[bold red]FAILED[/]"
    console.print(f"Validation of [bold]{report.model}[/] on {report.rows:,} rows: {verdict}")
    rows = [[c.name, "pass" if c.passed else "FAIL", fmt(c.value), c.limit] for c in report.checks]
    console.print(table("Checks", ["check", "result", "value", "limit"], rows))
    for check in report.failed:
        if check.detail:
            console.print(f"[red]{check.name}[/]: {check.detail}", highlight=False)
    if report.problem_count > 3:
        shown = "\n".join(f"  {p}" for p in report.problems[:SHOWN_PROBLEMS])
        console.print(f"{report.problem_count:,} problem(s) in all; the first:\n{shown}")
    if report.metrics:
        heads = ["metric", report.model] + ([report.against] if report.against else [])
        values = [
            [name, fmt(value)] + ([fmt(report.against_metrics.get(name))] if report.against else [])
            for name, value in report.metrics.items()
        ]
        console.print(table("Metrics", heads, values))
    if report.latency is not None:
        lat = report.latency
        console.print(
            f"Latency: 1 row p50 {lat.single_p50_ms:.2f} ms, p99 {lat.single_p99_ms:.2f} ms; "
            f"{lat.batch_rows} rows p50 {lat.batch_p50_ms:.2f} ms, p99 {lat.batch_p99_ms:.2f} ms",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
