"""The `relevo ...` commands README.md and docs/*.md write inline, in the text: each names a
command relevo has, and only options that command takes."""

from __future__ import annotations

import re
import shlex

import pytest
import typer
from docblocks import PAGES, ROOT

from relevo.cli.main import app

INLINE = re.compile(r"`(relevo [a-z][^`]*)`")


def _inline_commands() -> list[tuple[str, str]]:
    return [
        (page.relative_to(ROOT).as_posix(), found.group(1))
        for page in PAGES
        for found in INLINE.finditer(page.read_text(encoding="utf-8"))
    ]


@pytest.mark.parametrize(("page", "written"), _inline_commands())
def test_an_inline_command_uses_options_its_command_takes(page: str, written: str):
    root = command = typer.main.get_command(app)
    words = shlex.split(written)[1:]
    while words and words[0] in getattr(command, "commands", {}):
        command = command.commands[words.pop(0)]  # type: ignore[attr-defined]
    assert command is not root or not words, f"{page}: {written} (no such command)"
    taken = {name for param in command.params for name in (*param.opts, *param.secondary_opts)}
    named = [word.split("=")[0] for word in words if word.startswith("-") and word != "-"]
    assert [o for o in named if o not in taken] == [], f"{page}: {written}"
