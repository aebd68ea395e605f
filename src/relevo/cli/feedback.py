"""`relevo feedback` (labels from a file) and `relevo performance` (the report)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from relevo.cli.output import console, err_console, fmt, handle_errors, print_json, table
from relevo.cli.state import state
from relevo.errors import InvalidInputError, Problem

CHUNK_ROWS = 100_000


def _columns(frame: Any, options: dict[str, str], source: Path) -> None:
    """Refuse a file without the columns `options` names ({option: column}), naming each once
    with the option that names it."""
    missing = [f"{c!r} ({option})" for option, c in options.items() if c not in frame.columns]
    if missing:
        raise InvalidInputError(
            f"input file {source} has no column {', '.join(missing)}; its columns are "
            f"{', '.join(map(str, frame.columns))}"
        )


@handle_errors
def feedback(
    deployment: str = typer.Argument(..., help="Deployment name."),
    input: Path = typer.Option(..., "--input", "-i", help="Labels (.csv or .parquet)."),
    id_column: str = typer.Option("id", "--id-column", help="Column of prediction ids."),
    label_column: str = typer.Option("label", "--label-column", help="Column of true labels."),
    key_column: str | None = typer.Option(
        None, "--key-column", help="Join by this routing-key column instead of prediction ids."
    ),
    time_column: str | None = typer.Option(
        None,
        "--time-column",
        help="With --key-column: when each label's truth became known (not after now); it "
        "joins the latest prediction at or before it, and the label delay ends there.",
    ),
    within_days: float | None = typer.Option(
        None, "--within-days", help="With --key-column: how far back a prediction may be."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Store ground truth for logged predictions, by prediction id or by routing key and time:
    the latest prediction for the key at or before the label's time (docs/feedback.md)."""
    from relevo.feedback.labels import KeyedLabels, LabelColumns, ingest, ingest_keyed
    from relevo.serving.batch_io import iter_chunks
    from relevo.serving.frame_check import integral_keys

    if (key_column is None) != (time_column is None):
        raise InvalidInputError("--key-column and --time-column go together")
    if within_days is not None and not (math.isfinite(within_days) and 0 < within_days <= 36525):
        raise InvalidInputError(
            f"invalid --within-days {within_days:g}",
            [Problem("a positive number of days, at most 36525", option="--within-days")],
        )
    rv = state.relevo()
    rv.deployments.get(deployment)  # an unknown deployment before the file is read
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=json_out,
    ) as bar:
        task = bar.add_task("labels", total=None)
        advance = lambda n: bar.advance(task, n)  # noqa: E731
        if key_column is not None and time_column is not None:
            keyed_options = {
                "--key-column": key_column,
                "--time-column": time_column,
                "--label-column": label_column,
            }

            def keyed() -> Iterator[KeyedLabels]:
                # keys as the file says them ("000017"), as batch scoring logs them
                as_key = lambda name: name == key_column  # noqa: E731
                for chunk in iter_chunks(input, CHUNK_ROWS, text=as_key):
                    _columns(chunk, keyed_options, input)
                    rows = chunk.index.tolist()  # data rows, the first is 0 (as predict counts)
                    yield KeyedLabels(
                        rows,
                        integral_keys(chunk[key_column]).tolist(),
                        chunk[time_column].tolist(),
                        chunk[label_column].tolist(),
                    )

            window = timedelta(days=within_days) if within_days is not None else None
            names = LabelColumns(key=key_column, time=time_column, label=label_column)
            result = ingest_keyed(
                rv, deployment, keyed(), window=window, progress=advance, columns=names
            )
        else:

            def by_id() -> Iterator[tuple[list[int], list[Any], list[Any]]]:
                for chunk in iter_chunks(input, CHUNK_ROWS):
                    _columns(
                        chunk, {"--id-column": id_column, "--label-column": label_column}, input
                    )
                    rows = chunk.index.tolist()
                    yield rows, chunk[id_column].tolist(), chunk[label_column].tolist()

            names = LabelColumns(id=id_column, label=label_column)
            result = ingest(rv, deployment, by_id(), progress=advance, columns=names)
    if json_out:
        print_json(result.to_dict())
        return
    console.print(
        f"Stored {result.accepted:,} labels for {deployment} "
        f"({result.replaced:,} replaced an earlier one); {len(result.unknown):,} unknown."
    )
    if result.unknown:
        shown = ", ".join(result.unknown[:10])
        more = (
            f" and {len(result.unknown) - 10:,} more (--json lists all)"
            if len(result.unknown) > 10
            else ""
        )
        console.print(f"Not in the prediction log: {shown}{more}", soft_wrap=True)


def _thresholds(given: list[str] | None) -> dict[str, float]:
    out = {}
    for text in given or []:
        name, sep, value = text.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise InvalidInputError(
                f"invalid --threshold {text!r}",
                [Problem("write METRIC=VALUE, e.g. accuracy=0.9", column="--threshold")],
            )
    return out


def _print_segments(segments: list[dict[str, Any]], labelled: int) -> None:
    """The significant segments (at most five), or why there is none."""
    from relevo.feedback.segments import ALPHA, MIN_SUPPORT

    def line(seg: dict[str, Any]) -> str:
        # a calibrated classifier's segments are judged against the errors it expected there
        # (a segment of hard cases is not the model going wrong)
        expected = seg.get("expected_error")
        against = (
            f"where {fmt(expected, 3)} was expected (overall {fmt(seg['overall_error'], 3)})"
            if expected is not None
            else f"vs {fmt(seg['overall_error'], 3)}"
        )
        return (
            f"{' and '.join(seg['conditions'])}: error {fmt(seg['error'], 3)} {against} on "
            f"{seg['rows']:,} rows, q {seg['q_value']:.2g}"
        )

    significant = [s for s in segments if s["significant"]]
    for seg in significant[:5]:
        console.print(f"segment {line(seg)}", soft_wrap=True)
    if significant:
        return
    if segments:
        worse = [s for s in segments if s["gap"] > 0]
        console.print(
            f"no segment is significantly worse than the rest (q <= {ALPHA:g})"
            + (f"; the nearest: {line(worse[0])}" if worse else ""),
            soft_wrap=True,
        )
    else:
        console.print(
            f"no segment tested: a segment and the rest each need {MIN_SUPPORT} labelled rows "
            f"({labelled:,} labelled)",
            soft_wrap=True,
        )


@handle_errors
def performance(
    deployment: str = typer.Argument(..., help="Deployment name."),
    window: str = typer.Option("1d", "--window", help="Window of prediction time (1h, 1d, 1w)."),
    since: str | None = typer.Option(None, "--since", help="How far back (e.g. 7d); all if unset."),
    segments: bool = typer.Option(False, "--segments", help="Find the worst segments."),
    threshold: list[str] | None = typer.Option(
        None, "--threshold", help="A one-off business threshold, METRIC=VALUE (repeatable)."
    ),
    html: Path | None = typer.Option(None, "--html", help="Write the report as HTML here."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Realised performance per model and window of prediction time, with intervals, label
    coverage and delay, maturity, trend, estimate before labels and business thresholds."""
    from relevo.feedback.service import PerformanceService

    limits = _thresholds(threshold)
    if html is not None and not html.parent.is_dir():
        raise InvalidInputError(f"cannot write {html}: folder {html.parent} does not exist")
    report = PerformanceService(state.relevo()).performance(
        deployment, window, since, segments, thresholds=limits
    )
    if html is not None:
        html.write_text(report.to_html(), encoding="utf-8")
    breached = any(t.breached for t in report.thresholds)
    if json_out:
        print_json(report.to_dict())
    else:
        _show(report)
        if html is not None:
            console.print(f"Wrote {html}")
    if limits and breached:
        raise typer.Exit(1)  # a one-off check fails the command, for CI


def _show(report: Any) -> None:
    from relevo.feedback.degradation import crossing_words
    from relevo.feedback.performance import primary_metric

    metric = primary_metric(report.task)
    daily = all(w.end - w.start >= timedelta(days=1) for m in report.models for w in m.windows)
    shape = "%Y-%m-%d" if daily else "%m-%d %H:%M"
    if not report.models:
        console.print(f"No predictions logged for {report.deployment} in that range.")
    for model in report.models:
        rows = []
        for w in model.windows:
            found = w.metrics.get(metric)
            interval = (
                f"{fmt(found.low, 3)}-{fmt(found.high, 3)}"
                if found and found.low is not None and found.high is not None
                else ""
            )
            est = w.estimated(metric)
            rows.append(
                [
                    w.start.strftime(shape),
                    f"{w.rows:,}",
                    f"{w.coverage:.0%}",
                    "yes" if w.mature else "no",
                    fmt(found.value if found else None, 3),
                    interval,
                    fmt(est, 3) + (" drift!" if w.concept_drift else ""),
                ]
            )
        console.print(
            table(
                f"{model.model} ({model.role}): {model.labelled:,} of {model.rows:,} labelled",
                ["window", "rows", "labelled", "mature", metric, "95% CI", "estimate"],
                rows,
            )
        )
        for name, trend in model.trends.items():
            low, high = trend.get("rate_low"), trend.get("rate_high")
            interval = f" (95% CI {fmt(low, 3)} to {fmt(high, 3)})" if low is not None else ""
            crossing = crossing_words(trend, report.until)
            console.print(
                f"{name} trend: {fmt(trend.get('rate_per_week'), 3)} per week{interval}"
                + (f", {crossing}" if crossing else ""),
                soft_wrap=True,
            )
        if model.segments is not None:
            _print_segments(model.segments, model.labelled)
    for check in report.thresholds:
        verdict = {None: "not judged yet", True: "BREACHED", False: "met"}[check.breached]
        sign = ">=" if check.higher_is_better else "<="
        console.print(
            f"threshold {check.metric} {sign} {check.threshold:g}: "
            f"{fmt(check.value, 4) or '-'} {verdict}"
        )


def register(app: typer.Typer) -> None:
    app.command("feedback")(feedback)
    app.command("performance")(performance)
