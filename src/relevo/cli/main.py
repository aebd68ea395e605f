"""The `relevo` command."""

from __future__ import annotations

from pathlib import Path

import typer

from relevo import __version__
from relevo.cli import (
    alerts,
    container,
    demo,
    feedback,
    models,
    monitor,
    rollout,
    serving,
    validate,
)
from relevo.cli.flags import FlagsGroup
from relevo.cli.state import state

app = typer.Typer(
    name="relevo",
    cls=FlagsGroup,
    help="Take a trained model into production and keep it healthy there.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(models.app, name="models")
serving.register(app)
rollout.register(app)
validate.register(app)
container.register(app, models.app)
monitor.register(app)
alerts.register(app)
feedback.register(app)
app.command("demo")(demo.demo)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"relevo {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    home: Path | None = typer.Option(
        None, "--home", envvar="RELEVO_HOME", help="Folder for artifacts and the SQLite store."
    ),
    database_url: str | None = typer.Option(
        None, "--database-url", envvar="RELEVO_DATABASE_URL", help="SQLAlchemy database URL."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    state.close()
    state.home = home
    state.database_url = database_url
    ctx.call_on_close(state.close)


def main() -> None:
    app()
