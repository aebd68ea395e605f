"""The demo and the table commands on 80 and 120 columns (80 is what a pipe gets): prose
wraps between words with no hard break mid-sentence, tables never split a word, no line is
wider than the terminal.

Each run's output is compared with the same renderables printed 10,000 columns wide (a tee
console): every word of the narrow output must be a word of the wide one, so a word cut in two
("month-to-mo" / "nth"), or truncated by Rich, fails.
"""

from __future__ import annotations

import io
import itertools
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from rich.console import Console
from typer.testing import CliRunner

import relevo.cli.demo
from relevo.cli.main import app
from relevo.cli.state import state

WIDE = 10_000
#: box drawing and block characters: table borders, rules and bars, not words
DRAWING = re.compile(r"[\u2500-\u259f]+")


class Tee(Console):
    """A console of `width` columns that also prints everything to an unbounded one."""

    def __init__(self, width: int) -> None:
        super().__init__(file=io.StringIO(), width=width, color_system=None, highlight=False)
        self.wide = Console(file=io.StringIO(), width=WIDE, color_system=None, highlight=False)

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*objects, **kwargs)
        self.wide.print(*objects, **kwargs)

    def rule(self, *args: Any, **kwargs: Any) -> None:
        super().rule(*args, **kwargs)
        self.wide.rule(*args, **kwargs)

    def texts(self) -> tuple[str, str]:
        return self.file.getvalue(), self.wide.file.getvalue()  # type: ignore[attr-defined]


def words(text: str) -> set[str]:
    return {w for line in text.splitlines() for w in DRAWING.sub(" ", line).split()}


def check_layout(narrow: str, wide: str, width: int) -> None:
    too_wide = [line for line in narrow.splitlines() if cell_len(line.rstrip()) > width]
    assert not too_wide, f"lines wider than {width}:\n" + "\n".join(too_wide)
    split = words(narrow) - words(wide)
    assert not split, f"words split or cut at {width} columns: {sorted(split)}\n{narrow}"


def check_no_hard_break_mid_sentence(wide: str) -> None:
    """In the unbounded rendering a sentence is one line: a line of prose that starts with a
    lowercase letter continues the line before it, which must then have ended its sentence."""
    lines = wide.splitlines()
    for before, line in itertools.pairwise(lines):
        if line[:1].islower() and before.strip():
            ended = before.rstrip()[-1] in ".:!?)"
            assert ended, f"hard line break mid-sentence:\n{before}\n{line}"


@pytest.fixture(scope="module")
def short_home() -> Iterator[Path]:
    """A short folder, so that the copyable commands the demo prints fit 80 columns too."""
    folder = Path(tempfile.mkdtemp(prefix="rd", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run(args: list[str], width: int) -> str:
    try:
        result = CliRunner().invoke(app, args, env={"COLUMNS": str(width)})
    finally:
        state.close()
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("width", [80, 120])
def test_demo_and_tables_fit_the_terminal(
    width: int, short_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tee = Tee(width)
    monkeypatch.setattr(relevo.cli.demo, "console", tee)
    home = short_home / str(width)
    run(["demo", "--customers", "20", "--home", str(home)], width)
    narrow, wide = tee.texts()
    assert "Riskiest customers" in narrow and "month-to-month" in narrow
    assert f"relevo --home {home} models show churn:1" in narrow
    check_layout(narrow, wide, width)
    check_no_hard_break_mid_sentence(wide)

    # the commands the demo suggests, on the home it made
    base = ["--home", str(home)]
    for command in (["models", "list"], ["models", "show", "churn:1"], ["deployments"]):
        narrow = run([*base, *command], width)
        check_layout(narrow, run([*base, *command], WIDE), width)
    listed = run([*base, "models", "list"], width)
    sha = run([*base, "models", "show", "churn:1", "--json"], WIDE)
    sha256 = re.search(r'"([0-9a-f]{64})"', sha)
    assert sha256 is not None
    assert sha256[1][:12] in listed and sha256[1] not in listed  # the short form
