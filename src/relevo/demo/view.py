"""How the demo speaks: headings, short narration, small tables, spinners and one live view.

Everything goes through `View`, so `--json` (quiet) silences the story in one place and chapters
never print directly. Prose is one `say` per paragraph, wrapped by Rich at the terminal's width
(80 columns when piped); tables wrap between words and hold short forms that fit 80 columns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from rich.console import Console, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from relevo.cli.fit import FittedTable

Update = Callable[[RenderableType], None]


class View:
    """The demo's narrator: silent when `quiet`, except for what must reach stderr."""

    def __init__(self, console: Console | None = None, *, quiet: bool = False) -> None:
        self.quiet = quiet
        self.console = Console(quiet=True) if quiet else (console or Console())
        self.err = Console(stderr=True)

    @property
    def loud(self) -> Console:
        """Where messages go that even `--json` must show (stderr then)."""
        return self.err if self.quiet else self.console

    def heading(self, number: int, total: int, title: str, why: str) -> None:
        self.console.print()
        self.console.rule(f"[bold cyan]{number}/{total}  {title}", align="left", style="cyan")
        self.console.print(why, style="italic dim", highlight=False)

    def done(self, seconds: float) -> None:
        self.console.print(f"[green]✓[/] [dim]{seconds:.1f} s[/]", highlight=False)

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def command(self, text: str, comment: str = "") -> None:
        """A line to copy: never wrapped by Rich, so a long path stays one line."""
        line = f"  [cyan]{escape(text)}[/]" + (f"  [dim]# {comment}[/]" if comment else "")
        self.console.print(line, soft_wrap=True, highlight=False)

    def note(self, text: str) -> None:
        self.console.print(text, style="dim", highlight=False)

    def warn(self, text: str) -> None:
        """A warning: on stderr, so that even `--json` shows it."""
        self.err.print(f"[yellow]Warning:[/] {text}", highlight=False, soft_wrap=True)

    def show(self, renderable: RenderableType) -> None:
        self.console.print(renderable)

    @contextlib.contextmanager
    def status(self, text: str) -> Iterator[None]:
        """A spinner while a step without progress to report runs."""
        if self.quiet:
            yield
            return
        with self.console.status(text, spinner="dots"):
            yield

    @contextlib.contextmanager
    def live(self) -> Iterator[Update]:
        """A display that the caller redraws (no refresh thread of its own)."""
        if self.quiet:
            yield lambda _renderable: None
            return
        if not self.console.is_terminal:
            # a file or a pipe gets the final frame only, as an ordinary print
            last: list[RenderableType] = []

            def keep(renderable: RenderableType) -> None:
                last[:] = [renderable]

            yield keep
            if last:
                self.console.print(last[0])
            return
        with Live(console=self.console, auto_refresh=False, transient=False) as live:
            yield lambda renderable: live.update(renderable, refresh=True)

    def serving(self, url: str, deployment: str) -> None:
        """Where the server that stays up answers (stderr under --json, stdout otherwise)."""
        out = self.loud
        out.print()
        out.rule("[bold green]The server stays up", align="left", style="green")
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        grid.add_row("JSON API", f"POST {url}/v1/deployments/{deployment}/predict")
        grid.add_row("OpenAPI", f"{url}/docs")
        grid.add_row("Metrics", f"{url}/metrics")
        grid.add_row("V2 model", f"{url}/v2/models/{deployment}")
        grid.add_row("V2 infer", f"POST {url}/v2/models/{deployment}/infer")
        out.print(grid)
        out.print("Press Ctrl-C to stop.", style="dim")


def table(
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    right: Sequence[str] = (),
    header: bool = True,
) -> Table:
    """A compact table; columns named in `right` are right-aligned (numbers). It wraps between
    words at the terminal's width (`relevo.cli.fit`)."""
    out = FittedTable(title=title, title_justify="left", header_style="bold", show_header=header)
    for col in columns:
        out.add_column(col, justify="right" if col in right else "left", overflow="fold")
    for row in rows:
        out.add_row(*("" if v is None else str(v) for v in row))
    return out


def histogram(values: np.ndarray, bins: int = 10, width: int = 40) -> Table:
    """A terminal histogram of values in [0, 1]: one bar per bin, with counts and shares."""
    counts, edges = np.histogram(np.clip(values, 0.0, 1.0), bins=bins, range=(0.0, 1.0))
    total = max(int(counts.sum()), 1)
    top = max(int(counts.max()), 1)
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim")
    grid.add_column()
    grid.add_column(justify="right")
    grid.add_column(justify="right", style="dim")
    for count, lo, hi in zip(counts.tolist(), edges[:-1], edges[1:], strict=True):
        bar = Text("█" * round(width * count / top), style="magenta")
        grid.add_row(f"{lo:.1f}-{hi:.1f}", bar, f"{count:,}", f"{count / total:.1%}")
    return grid


def bar(done: int, total: int, width: int = 40) -> Text:
    """A plain progress bar as text (for views the caller redraws itself)."""
    filled = round(width * done / total) if total else width
    return Text.assemble(("━" * filled, "magenta"), ("━" * (width - filled), "grey35"))
