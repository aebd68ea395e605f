"""`relevo serve`, `deploy`, `status`, `predict` and `export` (`deployments` in its own module)."""

from __future__ import annotations

import copy
import ipaddress
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from relevo.cli import rollout
from relevo.cli.deployments import deployments
from relevo.cli.output import (
    console,
    err_console,
    fmt,
    handle_errors,
    print_json,
    stopped,
    table,
)
from relevo.cli.state import state
from relevo.errors import InvalidInputError, UnavailableError
from relevo.routing.rollout import running
from relevo.routing.service import KEEP
from relevo.serving.records import frame_to_records
from relevo.settings import Settings, reset_settings
from relevo.tables import write_table

if TYPE_CHECKING:
    from relevo.serving.batch import Interrupted


@handle_errors
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    workers: int = typer.Option(1, "--workers", min=1, help="Server processes."),
    access_log: bool = typer.Option(False, "--access-log", help="Log every request."),
    insecure: bool = typer.Option(
        False,
        "--insecure",
        help="Serve on a non-loopback address without tokens (only on a trusted network).",
    ),
    proxy_headers: bool = typer.Option(
        False,
        "--proxy-headers",
        help="Trust X-Forwarded-For/-Proto from the addresses in --forwarded-allow-ips.",
    ),
    forwarded_allow_ips: str | None = typer.Option(
        None,
        "--forwarded-allow-ips",
        help="Comma-separated proxy addresses whose forwarded headers are trusted "
        "(with --proxy-headers; default 127.0.0.1).",
    ),
) -> None:
    """Serve every deployment over HTTP (JSON API, Open Inference Protocol V2, /metrics)."""
    import uvicorn

    from relevo.server.protocol import uvicorn_options
    from relevo.serving.log import check_spool
    from relevo.serving.metrics import empty_multiprocess_dir

    rv = state.relevo()  # fail early, with a clear message, when the store is unreachable
    settings = rv.settings
    _check_exposure(host, settings, insecure)
    # the app (in this process or in workers) reads its settings from the environment
    os.environ["RELEVO_HOME"] = str(settings.home)
    os.environ["RELEVO_DATABASE_URL"] = settings.resolved_database_url
    reset_settings()
    deployments = rv.deployments.list()
    state.close()
    check_spool(settings)  # a clear message, not a traceback from each process's start
    _check_port_free(host, port)
    metrics_dir = None  # a temporary folder of ours, removed at the end
    inherited = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    given = inherited or settings.metrics_dir
    if given:
        # a fixed folder (an emptyDir in Kubernetes) outlives the process: start it empty,
        # before any worker counts in it
        empty_multiprocess_dir(Path(given))
    if given and (workers > 1 or inherited):
        # one process that did not start in multiprocess mode counts in memory: no folder
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(given)
    elif workers > 1:
        metrics_dir = tempfile.mkdtemp(prefix="relevo-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    if not deployments:
        err_console.print(
            "[yellow]No deployment yet:[/] deploy one with "
            "`relevo deploy NAME MODEL:VERSION`; the server picks it up live."
        )
    console.print(f"relevo serving on http://{host}:{port}  (docs: http://{host}:{port}/docs)")
    try:
        uvicorn.run(
            "relevo.server.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=access_log,
            log_level="info",
            loop="auto",
            timeout_graceful_shutdown=30,
            log_config=_log_config(workers),
            **uvicorn_options(settings, proxy_headers, forwarded_allow_ips),
        )
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _log_config(workers: int) -> dict[str, Any]:
    """uvicorn's logging plus relevo's own lines at INFO. uvicorn applies it in every process it
    starts: a worker of `--workers N` is a fresh interpreter, and without it printed relevo's
    warnings bare and none of its INFO lines (what each worker serves, the gates' moves, the
    rows a crashed worker left and the next one stored, the log's flush at the stop). With
    several workers a line names its process, as uvicorn's own lines do."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    who = "%(name)s [%(process)d]" if workers > 1 else "%(name)s"
    config["formatters"]["relevo"] = {"format": f"%(levelname)s {who}: %(message)s"}
    config["handlers"]["relevo"] = {
        "class": "logging.StreamHandler",
        "formatter": "relevo",
        "stream": "ext://sys.stderr",
    }
    # the command line's logging (`handle_errors`): other libraries' warnings, relevo's INFO
    config["root"] = {"handlers": ["relevo"], "level": "WARNING"}
    config["loggers"]["relevo"] = {"level": "INFO"}
    return config


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _check_exposure(host: str, settings: Settings, insecure: bool) -> None:
    """Refuse to serve beyond this machine with no token, unless told the network is trusted."""
    if _is_loopback(host) or settings.api_token or settings.admin_token:
        return
    if not insecure:
        raise InvalidInputError(
            f"refusing to serve on {host} without tokens: anyone who can reach that address "
            "could score data and change deployments. Set RELEVO_API_TOKEN (and "
            "RELEVO_ADMIN_TOKEN for changes), or serve on 127.0.0.1 behind a reverse proxy, or "
            "pass --insecure if every client of that network is trusted (docs/security.md)."
        )
    err_console.print(
        f"[bold red]Serving on {host} without tokens (--insecure):[/] anyone who can reach it "
        "may score data and change deployments."
    )


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UnavailableError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port"
            ) from None


@handle_errors
def deploy(
    deployment: str = typer.Argument(..., help="Deployment name, e.g. churn."),
    model: str = typer.Argument(..., help="NAME:VERSION to serve (NAME alone: its latest)."),
    key: str | None = typer.Option(
        None,
        "--key",
        help="Column of the instances that identifies a row (routing key); a redeploy keeps "
        "the current key unless given.",
    ),
    no_key: bool = typer.Option(False, "--no-key", help="Remove the routing key."),
    strategy: str | None = typer.Option(
        None, "--strategy", help="basic (swap), shadow or canary (default: from the options)."
    ),
    weight: float | None = typer.Option(
        None, "--weight", help="Canary: the challenger's share of rows, held until promote."
    ),
    rollout_: bool = typer.Option(
        False, "--rollout", help="Canary: progressive rollout, steps 5,25,50,100 percent."
    ),
    steps: str | None = typer.Option(None, "--steps", help="Canary: rollout steps, e.g. 5,50,100."),
    manual: bool = typer.Option(False, "--manual", help="Hold at each step until promote."),
    mirror: float | None = typer.Option(
        None, "--mirror", help="Shadow: the share of rows the challenger scores (default 1)."
    ),
    min_step_rows: int | None = typer.Option(
        None,
        "--min-step-rows",
        help="Rollout: challenger rows a step needs before advancing "
        "(default RELEVO_ROLLOUT_MIN_STEP_ROWS, 500).",
    ),
    min_step_seconds: float | None = typer.Option(
        None,
        "--min-step-seconds",
        help="Rollout: seconds a step lasts at least (default RELEVO_ROLLOUT_MIN_STEP_SECONDS, "
        "300).",
    ),
    bake_seconds: float | None = typer.Option(
        None,
        "--bake-seconds",
        help="After a promotion: how long a firing alert rolls back on its own "
        "(default RELEVO_ROLLOUT_BAKE_SECONDS, 3600).",
    ),
    reason: str | None = typer.Option(None, "--reason", help="Why, for the audit trail."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Serve MODEL under DEPLOYMENT: swap it (basic), or run it beside the champion as a
    challenger (--strategy shadow, or canary with --weight, --rollout or --steps)."""
    if key is not None and no_key:
        raise InvalidInputError("--key and --no-key exclude each other")
    rv = state.relevo()
    before = next((d for d in rv.deployments.list() if d.name == deployment), None)
    dep = rv.deployments.deploy(
        deployment,
        model,
        key=None if no_key else (key if key is not None else KEEP),
        strategy=strategy,  # type: ignore[arg-type]  # the service names a wrong one
        weight=weight,
        rollout=rollout_,
        steps=steps,
        manual=manual,
        mirror=mirror,
        min_step_rows=min_step_rows,
        min_step_seconds=min_step_seconds,
        bake_seconds=bake_seconds,
        actor=rollout.actor(),
        reason=reason,
    )
    if json_out:
        print_json(dep.to_dict())
        return
    console.print(rollout.describe(dep))
    if (
        before is not None
        and before.has_challenger
        and not dep.has_challenger
        and before.challenger_ref != dep.model_ref
    ):
        console.print(
            f"Its {before.strategy} challenger {before.challenger_ref} was withdrawn.",
            highlight=False,
        )
    elif before is not None and before.has_challenger and dep.has_challenger:
        console.print(
            f"It replaced the {running(before)}; the gates count the challenger's rows "
            "afresh from now.",
            highlight=False,
        )
    if dep.revision == 1:  # a new name: the others show a typo at once
        others = [d.name for d in rv.deployments.list() if d.name != dep.name]
        if others:
            console.print(f"Other deployments: {', '.join(others)}.", highlight=False)


@handle_errors
def status(
    deployment: str | None = typer.Argument(None, help="Deployment name (default: all)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show what a deployment serves: strategy, challenger, weight, step, and rows, errors and
    latency per model."""
    rollout.show_status(state.relevo(), deployment, json_out)


@handle_errors
def predict(
    deployment: str = typer.Argument(..., help="Deployment name."),
    input: Path = typer.Option(
        ..., "--input", "-i", help="Rows to score (.csv, .csv.gz, .parquet)."
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write results here."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Score a file through the deployment, with validation and the prediction log."""
    from relevo.serving.batch import Interrupted

    streamed = output is not None and not json_out
    logged: list[int] = []  # the rows of a run that succeeded (and wrote `output`, streamed)
    try:
        _predict(deployment, input, output, json_out, logged)
    except Interrupted as stop:
        raise stopped(_interrupted(stop, input, output, streamed)) from None
    except KeyboardInterrupt:
        if not logged:
            raise stopped("nothing was scored, written or logged") from None
        done = f"all {logged[0]:,} rows were scored"
        logs = state.relevo().settings.log_predictions
        if streamed:  # the output is in place: only the summary line was not printed
            done += f", written to {output} and logged" if logs else f" and written to {output}"
            raise stopped(done) from None
        done += " and logged" if logs else ""
        if output is not None:  # written in place, after the run (--json --output)
            raise stopped(
                f"{done}, but writing {output} stopped: it was not written (a file already "
                "there is as it was)"
            ) from None
        raise stopped(f"{done}; printing them stopped") from None


def _interrupted(stop: Interrupted, input: Path, output: Path | None, streamed: bool) -> str:
    """What a run stopped by Ctrl-C left: no output and nothing logged before it succeeded;
    after, every row logged, or kept to be (and written, when `streamed` to `output`)."""
    # scored in memory, the rows are printed (and written) once the run is over
    unsaid = "printed" + (f" or written to {output}" if output is not None else "")
    if not stop.complete:
        where = f"written to {output}" if streamed else unsaid
        return (
            f"stopped after scoring {stop.scored:,} rows of {input}; nothing was {where} or "
            "logged (run the command again to score the file)"
        )
    done = f"all {stop.scored:,} rows were scored" + (
        f" and written to {output}" if streamed else ""
    )
    if not stop.logged:
        done += " (the prediction log is off)"
    elif stop.kept is None:
        done += " and logged"
    else:
        done += (
            f"; the prediction log had not stored them all: the rest are kept in {stop.kept} "
            "and stored when relevo next opens the log (relevo serve, relevo predict)"
        )
    return done if streamed else f"{done}; nothing was {unsaid}"


def _predict(
    deployment: str, input: Path, output: Path | None, json_out: bool, logged: list[int]
) -> None:
    from relevo.serving.batch import read_rows, score_file, score_frame
    from relevo.serving.batch_io import check_output

    if output is not None:
        check_output(output, input)  # before anything is read, scored or logged
    rv = state.relevo()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        # a bar only where someone watches it: piped or logged, it would leave an empty line
        disable=json_out or not err_console.is_terminal,
    ) as bar:
        task = bar.add_task("scoring", total=None)
        advance = lambda n: bar.advance(task, n)  # noqa: E731
        if output is not None and not json_out:
            # streamed: read, validate, score and write in chunks; memory stays flat
            done = score_file(rv, deployment, input, output, progress=advance)
            logged.append(done.rows)
            console.print(f"Scored {done.rows:,} rows with {done.model}; wrote {output}")
            return
        frame = read_rows(rv, deployment, input)
        scored = score_frame(rv, deployment, frame, progress=advance, name=f"input file {input}")
        logged.append(len(scored))
    if output is not None:
        write_table(scored, output)
    if json_out:
        print_json(frame_to_records(scored))
        return
    # the answer, not the whole input: the row's key (or first column), then the outputs
    outputs = [c for c in scored.columns if c not in frame.columns]
    key = rv.deployments.get(deployment).key_column
    lead = [key] if key in frame.columns else []
    shown = scored[[*(lead or [frame.columns[0]]), *outputs]].head(20)
    console.print(
        table(
            f"Scored {len(scored):,} rows (first {len(shown)}; --output FILE for all columns)",
            [str(c) for c in shown.columns],
            [[fmt(v) for v in row] for row in shown.itertuples(index=False)],
        )
    )


@handle_errors
def export(
    deployment: str = typer.Argument(..., help="Deployment name."),
    output: Path = typer.Option(..., "--output", "-o", help="File to write (.csv or .parquet)."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Write the deployment's logged predictions (ids, model, time, features, outputs) and the
    labels that arrived for them."""
    from relevo.serving.export import export_predictions

    rows = export_predictions(state.relevo(), deployment, output)
    if json_out:
        print_json({"deployment": deployment, "rows": rows, "output": str(output)})
        return
    console.print(f"Exported {rows:,} predictions of {deployment} to {output}")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("deploy")(deploy)
    app.command("status")(status)
    app.command("deployments")(deployments)
    app.command("predict")(predict)
    app.command("export")(export)
