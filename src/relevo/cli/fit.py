"""Tables that wrap between words, never inside one, whenever the words fit the terminal.

Rich narrows the widest columns of a table that is too wide without looking at the words in
them, so an 80-column terminal (the default when output is piped) got "month-to-mo / nth" and
"3aac62698de / 1". `fitted` gives each column at least its longest word and shares the rest
of the width by need; Rich then wraps cells at spaces. Only when the longest words alone do not
fit does Rich's own folding apply.
"""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text


def _words(console: Console, cell: object) -> tuple[int, int]:
    """(longest word, longest line) of a cell, in terminal cells."""
    if isinstance(cell, Text):
        text = cell.plain
    elif isinstance(cell, str):
        text = console.render_str(cell).plain
    else:
        return 0, 0
    words = [Text(w).cell_len for w in text.split()]
    lines = [Text(line).cell_len for line in text.splitlines()]
    return max(words, default=0), max(lines, default=0)


class FittedTable(Table):
    """A Rich table laid out anew for each width it is printed at (see the module docstring)."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        fit(self, options.max_width, console)
        yield from super().__rich_console__(console, options)


def fit(table: Table, width: int, console: Console) -> Table:
    """Set column widths on `table` (in place) so that no word is split at `width`."""
    columns = table.columns
    original = getattr(table, "_fit_original", None)
    if original is None:
        original = table._fit_original = (table.show_edge, table.pad_edge)  # type: ignore[attr-defined]
    table.show_edge, table.pad_edge = original
    for column in columns:
        column.width = None
    if not columns:
        return table
    mins, maxes = [], []
    for column in columns:
        measured = [_words(console, column.header), *(_words(console, c) for c in column.cells)]
        mins.append(max(m for m, _ in measured))
        maxes.append(max(m for _, m in measured))
    _top, right, _bottom, left = table.padding
    pad = (left + right) * len(columns)
    borders = (len(columns) - 1) if table.box else 0
    edges = 2 if table.box and table.show_edge else 0
    room = width - pad - borders - edges
    if sum(maxes) <= room:
        return table  # fits as it is
    # what the words need may be the outer border, then the outer padding: dropped in that order
    outer_pad = left + right if table.box else 0
    if sum(mins) > room and sum(mins) <= room + edges + outer_pad:
        table.show_edge = False
        room += edges
        if sum(mins) > room:
            table.pad_edge = False
            room += outer_pad
    if sum(mins) > room:
        return table  # the words alone are too wide: Rich folds them
    widths = list(mins)
    spare = room - sum(widths)
    needs = [mx - mn for mn, mx in zip(mins, maxes, strict=True)]
    while spare > 0 and any(needs):
        total = sum(needs)
        given = 0
        for i, need in enumerate(needs):
            share = min(need, max(1, spare * need // total)) if need else 0
            share = min(share, spare - given)
            widths[i] += share
            needs[i] -= share
            given += share
        spare -= given
        if not given:
            break
    for column, w in zip(columns, widths, strict=True):
        column.width = w
    return table
