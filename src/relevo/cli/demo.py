"""`relevo demo`: the whole story on synthetic churn data, over a real server, in one command."""

from __future__ import annotations

from pathlib import Path

import typer

from relevo.cli.output import console, handle_errors, print_json
from relevo.cli.state import state


@handle_errors
def demo(
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the data and the traffic."),
    customers: int = typer.Option(
        3000, "--customers", min=10, help="Customers sent to the server as production traffic."
    ),
    serve: bool = typer.Option(
        False, "--serve", help="Keep the server up at the end (Ctrl-C stops it)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print only the final summary, as JSON."),
    home: Path | None = typer.Option(
        None,
        "--home",
        help="Folder of this run (default: a new one under RELEVO_HOME/demo/).",
    ),
) -> None:
    """Train, register, test, serve, send traffic, monitor and export: narrated, in a minute.

    Runs in a home of its own with an embedded SQLite store; your models are never touched.
    """
    from relevo.demo import CHAPTERS, Demo, DemoOptions, View, new_home
    from relevo.settings import get_settings

    base = state.home or get_settings().home
    options = DemoOptions(home=home or new_home(base), seed=seed, customers=customers)
    view = View(console, quiet=json_out)
    if state.database_url:
        view.warn("the demo keeps to its own SQLite store; the database URL given is not used")
    with Demo(options, view) as story:
        summary = story.run(CHAPTERS)
        if json_out:
            print_json(summary)
        if serve:
            story.serve_forever()
