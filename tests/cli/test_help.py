"""Every command's `--help`, as a user reads it: flags are shown as flags, values with a type."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from relevo.cli.main import app


def _commands() -> list[tuple[tuple[str, ...], list[typer.core.TyperOption]]]:
    """(path, options) of the root and of every command and group under it."""
    found = []

    def walk(command, path: tuple[str, ...]) -> None:
        options = [p for p in command.params if isinstance(p, typer.core.TyperOption)]
        found.append((path, options))
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return found


COMMANDS = _commands()


def test_the_tree_is_the_one_users_know() -> None:
    paths = {" ".join(path) for path, _ in COMMANDS}
    assert {"", "demo", "deploy", "deployments", "status", "models register", "export"} <= paths


@pytest.mark.parametrize(
    ("path", "options"), COMMANDS, ids=[" ".join(p) or "relevo" for p, _ in COMMANDS]
)
def test_help_shows_flags_as_flags(path: tuple[str, ...], options: list) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "<bool>" not in out
    assert re.search(r"--help\s+Show this message", out)
    for option in options:
        long = max(option.opts, key=len)
        assert long in out, f"{long} missing from the help of {path}"
        # the line that declares the option (its name first in the row), not a mention of it
        # in another option's help text
        line = next(
            line for line in out.splitlines() if re.search(rf"^\S?[\s*]{{1,5}}{long}\b", line)
        )
        if option.is_flag:
            # nothing but its other names between the flag and its help text
            assert re.search(rf"{long}(\s+-[-\w]+)*\s+[^<\s]", line), line
        else:
            assert re.search(rf"{long}(\s+-\w)?\s+<[^>]+>", line), line


def test_demo_json_is_a_flag() -> None:
    result = CliRunner().invoke(app, ["demo", "--json", "true"])
    assert result.exit_code == 2
    assert "unexpected extra argument" in result.output


@pytest.mark.parametrize("path", [(), ("models",), ("alerts",), ("db",)], ids=" ".join)
def test_each_command_is_summed_up_on_one_line(path: tuple[str, ...]) -> None:
    """A summary wrapped in its docstring broke mid-sentence in the list ("errors and" /
    "latency per model."): on a terminal wide enough, each command's summary is one line."""
    group = typer.main.get_command(app)
    for name in path:
        group = group.commands[name]
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for name, sub in group.commands.items():
        first = " ".join(sub.help.split("\n\n")[0].split())
        row = next(line for line in lines if re.match(rf"^\W*{name}\s", line))
        assert first in " ".join(row.split()), f"{name}: {row!r}"
