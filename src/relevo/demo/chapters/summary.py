"""Chapter: the run in one table, and the commands to try next."""

from __future__ import annotations

import shlex
from pathlib import Path

from relevo.demo.story import DEPLOYMENT, Chapter, Demo
from relevo.demo.view import table
from relevo.settings import get_settings


def run(demo: Demo) -> None:
    s = demo.summary
    slowest = max(demo.chapter_seconds, key=demo.chapter_seconds.__getitem__)
    rows = [
        ["home", s["home"]],
        ["model", f"{s['model']}  (ROC AUC {s['auc']:.3f})"],
        [
            "requests sent",
            f"{s['requests_sent']:,}  ({s['requests_failed']} refused: the planted one)",
        ],
        ["customers scored", f"{s['rows_predicted']:,} predicted, {s['rows_logged']:,} logged"],
        ["latency (server)", f"p50 {_ms(s['p50_ms'])}, p99 {_ms(s['p99_ms'])}"],
        ["export", f"{s['rows_exported']:,} rows in {Path(s['export_path']).name} (in the home)"],
        [
            "time",
            f"{demo.elapsed():.1f} s in all; the longest chapter, {slowest}, "
            f"{demo.chapter_seconds[slowest]:.1f} s",
        ],
    ]
    demo.view.show(table("The run", ["", ""], rows, header=False))
    relevo = f"relevo --home {shlex.quote(s['home'])}"
    if get_settings().database_url:
        # the user's RELEVO_DATABASE_URL would point these commands elsewhere
        relevo += f" --database-url {shlex.quote(demo.settings.resolved_database_url)}"
    ref = s["model"]
    demo.view.say("\n[bold]Try next[/] (the demo home is an ordinary relevo home):")
    commands = [
        (f"{relevo} models show {ref}", ""),
        (f"{relevo} status {DEPLOYMENT}", ""),
        (f"{relevo} export {DEPLOYMENT} --output predictions.csv", ""),
        (f"{relevo} drift churn-drift --since 24h", ""),
        (f"{relevo} alerts --all", ""),
        (f"{relevo} performance churn-labels --segments", ""),
        (f"{relevo} serve", "then open http://127.0.0.1:8000/docs"),
        (f"curl http://127.0.0.1:8000/v2/models/{DEPLOYMENT}", "Open Inference Protocol V2"),
        ("relevo demo --serve", "the story again; the server stays up"),
    ]
    for command, comment in commands:
        demo.view.command(command, comment)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


CHAPTER = Chapter(
    key="summary",
    title="Summary",
    why="What happened, in numbers, and where to go from here.",
    run=run,
)
