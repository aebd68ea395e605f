"""The demo's frame: its options, the state its chapters share, and the loop that tells them.

A chapter is a title, a line saying why it matters and a function `run(demo)`. The loop prints
the heading, times the chapter and records its seconds; what a chapter learns goes into
`demo.summary` (the `--json` output), what it makes for later chapters into the `Demo` fields.
"""

from __future__ import annotations

import secrets
import signal
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import pandas as pd

from relevo.context import Relevo
from relevo.demo.scrape import Scrape
from relevo.demo.traffic import TrafficStats
from relevo.demo.view import View
from relevo.errors import ConflictError, InvalidInputError, RelevoError, UnavailableError
from relevo.registry.types import ModelVersion
from relevo.server.background import BackgroundServer
from relevo.settings import Settings

T = TypeVar("T")

MODEL = "churn"
#: the tag `source` of every model the demo registers
SOURCE = "relevo demo"
DEPLOYMENT = "churn"


@dataclass(frozen=True)
class DemoOptions:
    """What `relevo demo` is asked to do."""

    home: Path
    seed: int = 0
    #: rows of production traffic sent to the server
    customers: int = 3000
    #: rows the model is trained (75 %) and evaluated (25 %) on
    train_customers: int = 10_000
    #: simulated days the traffic is spread over
    days: int = 3
    #: concurrent callers (more callers, larger micro-batches on the server)
    threads: int = 8


@dataclass(frozen=True)
class Chapter:
    """One step of the story: `run` is a thin caller of relevo's public API."""

    key: str
    title: str
    why: str
    run: Callable[[Demo], None]


def new_home(base: Path) -> Path:
    """A fresh folder for one demo run: `<base>/demo/<timestamp>-<random>`."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return base.expanduser() / "demo" / f"{stamp}-{secrets.token_hex(3)}"


def demo_settings(home: Path) -> Settings:
    """Settings of the demo's own home: its SQLite file, no tokens, a brisk prediction log.

    Given explicitly so that no RELEVO_* variable of the user's shell (another database, a
    token) reaches the demo.
    """
    return Settings(
        home=home,
        database_url=f"sqlite:///{(home / 'relevo.db').as_posix()}",
        api_token=None,
        admin_token=None,
        log_predictions=True,
        log_flush_interval_s=0.05,
        poll_interval_s=0.5,
        profile_flush_s=0.5,  # the drift chapter reads the profiles within a second
        reject_unseen_categories=False,
        reject_out_of_range=False,
    )


class Demo:
    """What the chapters share: the options, a relevo handle on the demo home, the view, and
    what earlier chapters made (None until the chapter that makes it has run)."""

    def __init__(self, options: DemoOptions, view: View) -> None:
        self.options = options
        self.view = view
        self.home = options.home.expanduser().resolve()
        if self.home.exists() and not self.home.is_dir():
            raise InvalidInputError(f"the demo home {self.home} is a file; give it a folder")
        self.settings = demo_settings(self.home)
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UnavailableError(
                f"cannot create the demo home {self.home}: {exc.strerror or exc}"
            ) from exc
        self._resources = ExitStack()
        self.rv = Relevo(settings=self.settings)
        self._resources.callback(self.rv.close)
        try:
            self._check_home()
        except BaseException:
            self.close()
            raise
        self.started = time.perf_counter()
        self.summary: dict[str, Any] = {"home": str(self.home), "deployment": DEPLOYMENT}
        self.chapter_seconds: dict[str, float] = {}
        # made by the chapters, in story order
        self.train: pd.DataFrame | None = None
        self.holdout: pd.DataFrame | None = None
        self.model: Any = None
        self.version: ModelVersion | None = None
        self.server: BackgroundServer | None = None
        self.customers: pd.DataFrame | None = None
        self.metrics_before: Scrape | None = None
        self.logged_before = 0
        self.stats: TrafficStats | None = None
        self.log: pd.DataFrame | None = None

    def _check_home(self) -> None:
        """Refuse a home with models the demo did not make: it must never touch the user's."""
        others = sorted({v.ref for v in self.rv.registry.list() if v.tags.get("source") != SOURCE})
        if others:
            shown = ", ".join(others[:5]) + (" ..." if len(others) > 5 else "")
            raise ConflictError(
                f"{self.home} holds models the demo did not make ({shown}); the demo only runs "
                "in a home of its own: leave out --home, or give it a new folder"
            )

    def __enter__(self) -> Demo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the server (its prediction log flushes) and close every handle."""
        self._resources.close()

    def on_close(self, callback: Callable[[], object]) -> None:
        """Run `callback` when the demo closes (last registered, first run)."""
        self._resources.callback(callback)

    def run(self, chapters: Sequence[Chapter]) -> dict[str, Any]:
        """Tell `chapters` in order; returns the summary (also the `--json` output)."""
        self.started = time.perf_counter()
        for number, chapter in enumerate(chapters, 1):
            self.view.heading(number, len(chapters), chapter.title, chapter.why)
            began = time.perf_counter()
            chapter.run(self)
            seconds = time.perf_counter() - began
            self.chapter_seconds[chapter.key] = round(seconds, 2)
            self.view.done(seconds)
        self.summary["seconds"] = dict(self.chapter_seconds)
        self.summary["total_seconds"] = round(self.elapsed(), 2)
        return self.summary

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def serve_forever(self) -> None:
        """Keep the server up until Ctrl-C (or SIGTERM), then stop it cleanly."""
        server = need(self.server, "serve")
        self.view.serving(server.url, DEPLOYMENT)
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            while server.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        server.stop()
        self.view.loud.print("Server stopped; every prediction it answered is in the log.")


def need(value: T | None, chapter: str) -> T:
    """What an earlier chapter made, or an error naming the chapter that must come first."""
    if value is None:
        raise RelevoError(f"the demo's {chapter!r} chapter must run before this one")
    return value


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (docker stop, kill) ends `--serve` the way Ctrl-C does."""
    raise KeyboardInterrupt
