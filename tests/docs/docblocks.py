"""The fenced code blocks of README.md and docs/*.md, and what each says it needs to run.

A block may be preceded by an HTML comment that the reader of the Markdown sees in the source:

    <!-- test: run -->                         runs as written (the same as no comment)
    <!-- test: needs README.md#1, server -->   runs after the named blocks, with these needs

A need is another block of the same language (`PAGE#N`, the N-th block of that language on the
page, run first in the same script) or a name the tests provide (`NEEDS` below). Anything else
in a `test:` comment is an error, so that no block is skipped without saying so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: needs that the tests provide, and what each means
NEEDS = {
    "server": "a relevo server answers where the block says 127.0.0.1:8000, with the churn "
    "deployment (the block's address is replaced by the test server's)",
    "customers": "`import relevo`, and `customers`: a DataFrame of new churn customers "
    "(customer_id and the features)",
}

FENCE = re.compile(
    r"(?:^<!--\s*test:\s*(?P<marker>[^>]*?)\s*-->\s*\n)?^```(?P<lang>\w+)\n(?P<code>.*?)^```",
    re.M | re.S,
)
BLOCK_NAME = re.compile(r"^[\w.-]+\.md#\d+$")


@dataclass(frozen=True)
class Block:
    page: str
    lang: str
    number: int
    code: str
    needs: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.page}#{self.number}"


def parse_marker(marker: str | None) -> tuple[str, ...]:
    """The needs a `<!-- test: ... -->` comment names (ValueError for anything unknown)."""
    if marker is None or marker == "run":
        return ()
    verb, _, rest = marker.partition(" ")
    needs = tuple(n.strip() for n in rest.split(",") if n.strip())
    if verb != "needs" or not needs:
        raise ValueError(f"unknown test marker {marker!r}: use 'run' or 'needs A, B'")
    unknown = [n for n in needs if n not in NEEDS and not BLOCK_NAME.match(n)]
    if unknown:
        raise ValueError(f"unknown needs {unknown} in {marker!r}; known: {sorted(NEEDS)}")
    return needs


def blocks(lang: str, page: Path | None = None) -> list[Block]:
    """Every `lang` block of `page` (default: README.md and docs/*.md), numbered per page."""
    found = []
    for path in [page] if page else PAGES:
        name = path.name if path.parent == ROOT / "docs" or path.parent == ROOT else str(path)
        matches = [m for m in FENCE.finditer(path.read_text()) if m["lang"] == lang]
        for number, match in enumerate(matches, 1):
            found.append(Block(name, lang, number, match["code"], parse_marker(match["marker"])))
    return found


def block(name: str, lang: str = "python") -> Block:
    """The block called `name` (`PAGE#N`)."""
    page, _, _ = name.partition("#")
    path = ROOT / page if (ROOT / page).is_file() else ROOT / "docs" / page
    (found,) = [b for b in blocks(lang, path) if b.name == name]
    return found
