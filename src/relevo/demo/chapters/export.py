"""Chapter: the prediction log as a Parquet file, what `relevo export` writes."""

from __future__ import annotations

from relevo.demo.story import DEPLOYMENT, Chapter, Demo
from relevo.serving.export import export_predictions


def run(demo: Demo) -> None:
    path = demo.home / f"predictions-{DEPLOYMENT}.parquet"
    rows = export_predictions(demo.rv, DEPLOYMENT, path)
    demo.summary["rows_exported"] = rows
    demo.summary["export_path"] = str(path)
    demo.view.say(f"Wrote {rows:,} predictions of [bold]{DEPLOYMENT}[/] to")
    demo.view.command(str(path))
    demo.view.say(
        "One row per prediction: id, deployment, model, created_at, routing_key, latency_ms, "
        "source (request or batch), "
        "the features as sent, probability and label. Read it with pandas.read_parquet."
    )


CHAPTER = Chapter(
    key="export",
    title="Export",
    why="The log leaves relevo as a plain file: for analysts, audits and the next training set.",
    run=run,
)
