"""Batch scoring: a file of rows through the same validation, routing and logging as the API."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from relevo.context import Relevo
from relevo.errors import InvalidInputError, Problem
from relevo.registry.signature import Signature
from relevo.serving.log import open_prediction_log
from relevo.serving.records import flatten_output, frame_to_records
from relevo.serving.runtime import Runtime
from relevo.serving.validation import MAX_PROBLEMS, validate_rows

CHUNK_ROWS = 1000


def score_frame(
    relevo: Relevo,
    deployment: str,
    frame: pd.DataFrame,
    *,
    log: bool = True,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Score every row of `frame` with `deployment`; returns the rows with id, model, outputs.

    The whole file is validated before anything is scored, so a bad row rejects the file
    (listing every problem with its row) and nothing is half-logged.
    """
    if frame.empty:
        raise InvalidInputError("the input has no rows")
    dep = relevo.deployments.get(deployment)
    plog = open_prediction_log(relevo) if log else None
    runtime = Runtime(relevo, prediction_log=plog, only=[deployment])
    try:
        runtime.refresh(strict=True)
        runner = runtime.endpoint(deployment).primary
        frame, problems = _coerce_numbers(frame, runner.signature)
        total = len(problems)
        records = frame_to_records(frame)
        for start in range(0, len(records), CHUNK_ROWS):
            try:
                validate_rows(
                    records[start : start + CHUNK_ROWS],
                    runner.signature,
                    dep.key_column,
                    runtime.policy,
                )
            except InvalidInputError as exc:
                seen = {(p.row, p.column) for p in problems}
                repeated = 0
                for p in exc.problems:
                    row = None if p.row is None else p.row + start
                    # a cell already reported as not a number, a column missing from every row
                    if (row, p.column) in seen:
                        repeated += 1
                        continue
                    problems.append(Problem(p.message, row, p.column))
                total += exc.total - repeated
        if problems:
            raise InvalidInputError(
                f"{total} problem(s) in the input; nothing was scored",
                problems[:MAX_PROBLEMS],
                total,
            )
        answers: list[dict[str, Any]] = []

        async def run() -> None:
            for start in range(0, len(records), CHUNK_ROWS):
                answer = await runtime.predict(
                    deployment, records[start : start + CHUNK_ROWS], protocol="batch"
                )
                answers.extend(answer.predictions)
                if progress is not None:
                    progress(len(answer.predictions))

        asyncio.run(run())
    finally:
        if plog is not None:
            plog.close()
            if plog.dead_lettered:
                warnings.warn(
                    f"{plog.dead_lettered} scored rows could not be stored in the prediction "
                    f"log; they are kept in {plog.dead_letter}",
                    stacklevel=2,
                )
    names = set(frame.columns)
    out = pd.DataFrame.from_records([flatten_output(a, names) for a in answers])
    out.index = frame.index
    return pd.concat([frame, out], axis=1)


def _coerce_numbers(
    frame: pd.DataFrame, signature: Signature
) -> tuple[pd.DataFrame, list[Problem]]:
    """Numeric columns a file delivered as text (one bad cell turns a CSV column into text):
    parse them, and report exactly the cells that are not numbers."""
    problems: list[Problem] = []
    fixed = {}
    for spec in signature.columns:
        if spec.kind not in ("number", "integer") or spec.name not in frame.columns:
            continue
        column = frame[spec.name]
        if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(
            column.dtype
        ):
            continue
        parsed = pd.to_numeric(column, errors="coerce")
        bad = parsed.isna() & column.notna()
        for position in np.flatnonzero(bad.to_numpy())[:MAX_PROBLEMS].tolist():
            problems.append(
                Problem(f"expected a number, got {column.iloc[position]!r}", position, spec.name)
            )
        fixed[spec.name] = parsed
    if fixed:
        frame = frame.assign(**fixed)
    return frame, problems
