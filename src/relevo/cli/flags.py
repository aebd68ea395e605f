"""Help that shows boolean flags as flags: `--json`, never `--json <bool>`.

Typer's help prints every option's type, flags included (and `--help` itself), which reads as if
a flag took a value (`relevo demo --json true` then fails). The root group clears the shown type
of every flag in the whole command tree before it parses anything, so every `--help` agrees.

It also gives each command a one-line summary for its group's list of commands: Typer's rich help
keeps the line breaks of a docstring there, so a summary wrapped in the source broke mid-sentence
in `relevo --help` ("errors and" / "latency per model.").
"""

from __future__ import annotations

import inspect
from typing import Any

from typer.core import TyperGroup, TyperOption


def _show_as_flags(params: list[Any]) -> None:
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            # an empty metavar is what the help prints in place of the type; parsing ignores it
            param.metavar = ""


def _summary(help_text: str) -> str:
    """The first paragraph of a docstring, its lines joined: what a list of commands shows."""
    first = inspect.cleandoc(help_text).split("\n\n")[0]
    return " ".join(line.strip() for line in first.splitlines())


def show_flags_as_flags(command: Any, ctx: Any) -> None:
    """Clear the shown type of every flag of `command` and of its subcommands, `--help` too, and
    give each subcommand a one-line summary."""
    _show_as_flags([*command.params, command.get_help_option(ctx)])
    for sub in getattr(command, "commands", {}).values():
        if not sub.short_help and sub.help:
            sub.short_help = _summary(sub.help)
        show_flags_as_flags(sub, ctx)


class FlagsGroup(TyperGroup):
    """The root group of `relevo`: flags show as flags in every command's help."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        show_flags_as_flags(self, ctx)
        return super().parse_args(ctx, args)
