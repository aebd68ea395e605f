"""The chapters of `relevo demo`, in story order.

Each module holds one chapter: a `run(demo)` that calls relevo's public API and a `CHAPTER`
naming it. To add one, write the module and put its `CHAPTER` in `CHAPTERS` where it belongs
in the story.
"""

from __future__ import annotations

from relevo.demo.chapters import (
    broken,
    drift,
    export,
    feedback,
    observe,
    register,
    rehearse,
    replace,
    serve,
    silence,
    summary,
    traffic,
    train,
)

CHAPTERS = (
    train.CHAPTER,
    register.CHAPTER,
    rehearse.CHAPTER,
    serve.CHAPTER,
    traffic.CHAPTER,
    observe.CHAPTER,
    export.CHAPTER,
    replace.CHAPTER,
    broken.CHAPTER,
    drift.CHAPTER,
    silence.CHAPTER,
    feedback.CHAPTER,
    summary.CHAPTER,
)

__all__ = ["CHAPTERS"]
