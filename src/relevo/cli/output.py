"""How the CLI speaks: Rich tables for people, JSON for scripts, one-line errors with exit codes."""

from __future__ import annotations

import functools
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ParamSpec, TypeVar

import orjson
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from relevo.cli.fit import FittedTable
from relevo.errors import RelevoError
from relevo.routing.deployment import percent

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


def print_json(data: Any) -> None:
    sys.stdout.write(
        orjson.dumps(
            data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=str
        ).decode()
        + "\n"
    )
    sys.stdout.flush()


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A table that wraps between words at the terminal's width (see `relevo.cli.fit`)."""
    out = FittedTable(title=title, title_justify="left", header_style="bold")
    for col in columns:
        out.add_column(col, overflow="fold")  # a word wider than the terminal folds, never cut
    for row in rows:
        # Text, not str: user data ("[/x]" in a tag or a category) must not be read as markup
        out.add_row(*(Text("" if v is None else str(v)) for v in row))
    return out


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def stopped(message: str) -> typer.Exit:
    """Ctrl-C: what the command had done, and exit code 130 (a shell's code for SIGINT)."""
    err_console.print(
        f"[bold yellow]Interrupted:[/] {escape(message)}", highlight=False, soft_wrap=True
    )
    return typer.Exit(130)


def _show_warning(message: Any, category: Any, *_args: Any, **_kwargs: Any) -> None:
    text = escape(str(message))
    err_console.print(f"[yellow]Warning:[/] {text}", highlight=False, soft_wrap=True)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Run a command: relevo errors become one red line and their exit code, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        warnings.showwarning = _show_warning
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        try:
            return func(*args, **kwargs)
        except RelevoError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            if isinstance(exc, ValidationError) and exc.title == "Settings":
                raise fail(_bad_settings(exc), 1) from None
            if os.environ.get("RELEVO_DEBUG"):
                raise
            raise fail(
                f"unexpected {type(exc).__name__}: {exc} (set RELEVO_DEBUG=1 for the traceback)", 1
            ) from None

    return wrapper


def _bad_settings(exc: ValidationError) -> str:
    """The settings the environment (or a flag) got wrong, each named as it is set."""
    named = []
    for error in exc.errors():
        field = "_".join(str(part) for part in error["loc"]).upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        named.append(f"invalid setting RELEVO_{field}: {message}")
    return "; ".join(named)


def share(value: float) -> str:
    """A share of rows as a percentage, as precise as it was set: `5%`, `12.5%`, `0.5%` (a
    canary at 0.005 is not "0%"), `0.00001%` (nor one at 1e-7 "1e-05%")."""
    return percent(value)


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)
