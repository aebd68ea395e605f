"""Options shared by every command (`--home`, `--database-url`) and the handle they open."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from relevo.context import Relevo


@dataclass
class CliState:
    home: Path | None = None
    database_url: str | None = None
    _relevo: Relevo | None = None

    def close(self) -> None:
        if self._relevo is not None:
            self._relevo.close()
            self._relevo = None

    def relevo(self) -> Relevo:
        if self._relevo is None:
            self._relevo = Relevo(home=self.home, database_url=self.database_url)
        return self._relevo


state = CliState()
