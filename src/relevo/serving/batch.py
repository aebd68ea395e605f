"""Batch scoring: a file of rows through the same validation, coercion and log as the API.

Read, validate, score and write in chunks (CSV and Parquet alike), so memory stays flat as the
file grows. One pass over the file: a thread reads and validates the next chunk while this one
is scored and written. A bad row rejects the whole file: from the first bad chunk on, chunks are
only validated, so the error lists every problem of the file (with its row and column), and the
partial output is removed. The output path is checked before anything is read.

Under a canary each chunk's rows are split between the champion and the challenger as the API
splits a request (`batch_route`): the same `assign`, so a customer gets the same model from a file
as over HTTP, the challenger's failures answered by the champion and logged as `fallback`, each
row naming its model. A basic or shadow deployment's chunks take the champion's path alone.

A failed run leaves the prediction log as it was: the log entries of a run are written to disk
as it goes (`batch_log.HeldLog`, memory stays flat) and handed to the log only once every chunk
is scored and the output is complete (docs/serving.md "Batch scoring").
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from relevo.context import Relevo
from relevo.errors import InvalidInputError, Problem
from relevo.registry.flavors.base import RawOutput
from relevo.registry.signature import Signature
from relevo.serving.batch_io import (
    Behind,
    ChunkWriter,
    check_output,
    iter_chunks,
    read_ahead,
    refuse_repeated,
)
from relevo.serving.batch_log import HeldLog
from relevo.serving.batch_route import Router, Share, routes
from relevo.serving.diagnosis import MAX_PROBLEMS
from relevo.serving.entries import LogEntry
from relevo.serving.frame_check import CheckedChunk, Tally, check_frame
from relevo.serving.frames import Part
from relevo.serving.ids import new_id_array
from relevo.serving.outputs import format_outputs, output_columns, output_names
from relevo.serving.pool import Endpoint, ModelPool
from relevo.serving.predictor import fallen_from, log_entry
from relevo.serving.runner import ModelRunner
from relevo.serving.validation import Policy
from relevo.store.predictions import BATCH


class Scored(NamedTuple):
    rows: int
    #: the model that answered; under a canary that split the rows, each with its rows
    model: str
    output: Path | None
    #: rows per model that answered them (its ref), the champion first
    models: dict[str, int]
    #: rows the champion answered because the canary's challenger failed on them
    fallback: int = 0


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a batch run; says what became of its rows. Before the run succeeded
    (`complete` False): nothing was written or logged, `scored` rows had been scored. After
    (the output in place, the rows handed to the log when `logged`), while its rows were
    stored: those not stored yet wait in `kept` for the next start (None: all were stored)."""

    def __init__(self, scored: int, complete: bool, logged: bool, kept: Path | None) -> None:
        super().__init__(f"interrupted after scoring {scored} rows")
        self.scored = scored
        self.complete = complete
        self.logged = logged
        self.kept = kept


def score_file(
    relevo: Relevo,
    deployment: str,
    source: Path,
    output: Path,
    *,
    log: bool = True,
    chunk_rows: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Scored:
    """Score every row of the file `source` with `deployment` and write `output` (.csv or
    .parquet): the input columns, then id, model and the outputs (one named like an input
    column is `output_<name>`)."""
    check_output(output, source)
    size = chunk_rows or relevo.settings.batch_chunk_rows

    def chunks(numbers: frozenset[str], floats: frozenset[str]) -> Iterator[pd.DataFrame]:
        return iter_chunks(source, size, text=lambda name: name not in numbers, floats=floats)

    with ChunkWriter(output, source) as writer:
        models, fallback = _score(
            relevo,
            deployment,
            chunks,
            writer.write,
            writer.commit,
            log=log,
            progress=progress,
            name=f"input file {source}",
        )
    return Scored(sum(models.values()), _named(models), output, models, fallback)


def score_frame(
    relevo: Relevo,
    deployment: str,
    frame: pd.DataFrame,
    *,
    log: bool = True,
    chunk_rows: int | None = None,
    progress: Callable[[int], None] | None = None,
    name: str = "the input",
) -> pd.DataFrame:
    """Score every row of `frame` in memory; returns the rows with id, model (the one that
    answered each row) and outputs. Errors call the rows `name` (`input file in.csv`)."""
    size = chunk_rows or relevo.settings.batch_chunk_rows
    refuse_repeated(frame.columns, "the frame")

    def chunks(numbers: frozenset[str], floats: frozenset[str]) -> Iterator[pd.DataFrame]:
        for start in range(0, len(frame), size):
            yield frame.iloc[start : start + size]

    parts: list[pd.DataFrame] = []
    _score(relevo, deployment, chunks, parts.append, None, log=log, progress=progress, name=name)
    if not parts:
        raise InvalidInputError(f"{name} has no rows")
    try:
        return pd.concat(parts) if len(parts) > 1 else parts[0]
    except KeyboardInterrupt as exc:  # the run had succeeded: its rows are the log's
        rows, logging = sum(map(len, parts)), log and relevo.settings.log_predictions
        raise Interrupted(rows, True, logging, None) from exc


def _score(
    relevo: Relevo,
    deployment: str,
    chunks: Callable[[frozenset[str], frozenset[str]], Iterator[pd.DataFrame]],
    write: Callable[[pd.DataFrame], None],
    finish: Callable[[], None] | None,
    *,
    log: bool,
    progress: Callable[[int], None] | None,
    name: str,
) -> tuple[dict[str, int], int]:
    """Score the chunks (`chunks(numbers, floats)`: a file's rows, the columns `numbers` parsed
    as numbers, of them `floats` as decimals, and every other column as the file says it);
    returns the rows each model answered (by ref, the champion first) and how many of them
    the champion answered in a failing challenger's place. Errors call the rows `name`."""
    dep = relevo.deployments.get(deployment)
    pool = ModelPool(relevo, only=[deployment])
    pool.refresh(strict=True)
    endpoint = pool.endpoint(deployment)
    runner = endpoint.primary
    settings = relevo.settings
    policy = Policy(settings.reject_unseen_categories, settings.reject_out_of_range)
    router = Router(endpoint, policy) if routes(endpoint) else None
    answered = [0] * len(endpoint.runners)
    logging = log and settings.log_predictions
    problems: list[Problem] = []
    failed = False
    bad_rows = 0
    scored = 0
    signatures = [r.version.signature for r in endpoint.runners]
    numbers = number_columns(signatures, dep.key_column)
    floats = float_columns(signatures, numbers)
    checked_chunks = _checked(
        chunks(numbers, floats), runner, dep.key_column, policy, problems, router
    )
    task, classes = runner.version.task, runner.version.classes
    labels_as_text = _mixed_labels(endpoint)
    complete = False
    held: HeldLog | None = None
    try:
        with (
            HeldLog(relevo) if logging else contextlib.nullcontext() as held,
            Behind() as behind,
            contextlib.closing(read_ahead(checked_chunks)) as checked_ahead,
        ):

            def keep(
                chunk: pd.DataFrame, checked: CheckedChunk, raw: RawOutput, took: float
            ) -> None:
                """A scored chunk's rows written and its log entries held (writing thread)."""
                ids = new_id_array(len(chunk))
                write(_scored_frame(chunk, ids, runner.ref, output_columns(task, classes, raw)))
                if held is not None:
                    step = held.piece_rows
                    for entry in _log_entries(
                        dep.name, runner, "champion", ids, checked, raw, took, step
                    ):
                        held.add(entry)

            def keep_split(
                chunk: pd.DataFrame, results: list[tuple[Share, RawOutput, float]]
            ) -> None:
                """A canary's chunk: each model's rows, put back in the file's order."""
                ids = new_id_array(len(chunk))
                taken = [(share, ids.take(share.idx), raw, took) for share, raw, took in results]
                parts = []
                for share, some, raw, _took in taken:
                    by = endpoint.runners[share.model]
                    columns = output_columns(by.version.task, by.version.classes, raw)
                    if labels_as_text and "label" in columns:
                        text = np.empty(len(columns["label"]), dtype=object)  # None stays none
                        text[:] = [None if x is None else str(x) for x in columns["label"]]
                        columns["label"] = text
                    parts.append(_extra(chunk, some, by.ref, columns, share.idx))
                write(_in_order(chunk, parts, _extra_names(endpoint, set(chunk.columns))))
                if held is not None:
                    step = held.piece_rows
                    for share, some, raw, took in taken:
                        by = endpoint.runners[share.model]
                        for entry in _log_entries(
                            dep.name, by, share.role, some, share.checked, raw, took, step,
                            fallen_from(endpoint, share.role),
                        ):  # fmt: skip
                            held.add(entry)

            for frame, checked, bad, shares in checked_ahead:
                bad_rows += bad
                failed = failed or checked is None
                if failed or checked is None or len(frame) == 0:
                    # a bad file: what was scored is dropped; the rest is only checked, so the
                    # error lists the problems of the whole file
                    continue
                if shares is None:  # the champion answers every row of the chunk
                    started = time.perf_counter()
                    raw = runner.raw(checked.part)
                    latency = time.perf_counter() - started  # the chunk's model call
                    behind.submit(partial(keep, frame, checked, raw, latency))
                    answered[0] += len(frame)
                else:
                    assert router is not None
                    split = _score_shares(endpoint, router, checked, shares, answered)
                    behind.submit(partial(keep_split, frame, split))
                scored += len(frame)
                if progress is not None:
                    progress(len(frame))
            behind.finish()
            if failed:
                raise _rejected(problems, bad_rows, name)
            if scored == 0:
                raise InvalidInputError(f"{name} has no rows")
            # Ctrl-C between the two renames would leave a complete output and nothing logged
            with _uninterrupted():
                if finish is not None:
                    finish()  # the output is complete before anything reaches the log
                if held is not None:
                    held.hand_over()
                complete = True
            if held is not None:
                held.store()
            if router is not None:
                router.warn(scored)
    except KeyboardInterrupt as exc:
        # what a stop leaves, for the caller to tell (the `with` blocks above have dropped
        # what was scored, unless the run had succeeded)
        kept = None
        if held is not None and held.segment.handed_over and held.segment.path.exists():
            kept = held.segment.path
        raise Interrupted(scored, complete, logging, kept) from exc
    models = {r.ref: rows for r, rows in zip(endpoint.runners, answered, strict=True) if rows}
    return models, 0 if router is None else router.fallback_rows


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Ctrl-C held back until the block has run (the main thread's SIGINT; elsewhere no
    signal arrives): its steps happen all, or none."""
    # (a handler not set from Python, None, could not be put back)
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is None
    ):
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        signal.raise_signal(signal.SIGINT)  # delivered now, to whatever handled it before


def read_rows(relevo: Relevo, deployment: str, source: Path) -> pd.DataFrame:
    """The rows of file `source` as `score_file` reads them, for scoring them in memory."""
    dep = relevo.deployments.get(deployment)
    refs = [dep.champion_ref, *([dep.challenger_ref] if dep.challenger_ref else [])]
    signatures = [relevo.registry.get(ref).signature for ref in refs]
    numbers = number_columns(signatures, dep.key_column)
    size = relevo.settings.batch_chunk_rows
    floats = float_columns(signatures, numbers)
    parts = list(iter_chunks(source, size, text=lambda name: name not in numbers, floats=floats))
    if len(parts) == 1:
        return parts[0]
    return pd.concat(parts) if parts else pd.DataFrame()


def number_columns(signatures: list[Signature], key: str | None) -> frozenset[str]:
    """The columns a file's numbers are parsed in: those every model reads as numbers. The
    others (text, the routing key, the columns passed through to the output) are read as the
    file says them, so that what is validated, routed, logged and written back is the user's
    text ("02" is not 2, "000017" is not 17)."""
    kinds: dict[str, set[str]] = {}
    for signature in signatures:
        for spec in signature.columns:
            kinds.setdefault(spec.name, set()).add(spec.kind)
    return frozenset(
        name for name, kind in kinds.items() if kind <= {"number", "integer"} and name != key
    )


def float_columns(signatures: list[Signature], numbers: frozenset[str]) -> frozenset[str]:
    """Of `numbers`, the columns some model reads as decimals (kind number): read as floats in
    every chunk, so that one whose first chunk holds whole numbers only is not integers there
    and decimals later (an output file has one type per column)."""
    return frozenset(
        spec.name
        for signature in signatures
        for spec in signature.columns
        if spec.kind == "number" and spec.name in numbers
    )


def _mixed_labels(endpoint: Endpoint) -> bool:
    """Whether the models' labels differ in type (0/1 and "yes"/"no"; a regressor has none):
    the label column is then written as text, one type in every chunk of the file."""
    versions = [r.version for r in endpoint.runners]
    kinds = {type(c) for v in versions for c in v.classes or ()}
    return len(kinds) > 1 or (bool(kinds) and any(not v.classes for v in versions))


def _named(models: dict[str, int]) -> str:
    """The model that answered, or each model with its rows (a canary's two)."""
    if len(models) == 1:
        return next(iter(models))
    return " and ".join(f"{ref} ({rows:,} rows)" for ref, rows in models.items())


def _score_shares(
    endpoint: Endpoint,
    router: Router,
    checked: CheckedChunk,
    shares: list[Share],
    answered: list[int],
) -> list[tuple[Share, RawOutput, float]]:
    """Each share's raw outputs and model-call time. A challenger that fails leaves its rows
    to the champion (role fallback), as the API's predictor does."""
    scored = []
    for share in shares:
        started = time.perf_counter()
        try:
            raw = endpoint.runners[share.model].raw(share.checked.part)
        except Exception as exc:
            if share.model == 0:
                raise  # the champion's own failure fails the run
            share = router.fallback(checked, share.idx, f"{type(exc).__name__}: {exc}")
            started = time.perf_counter()
            raw = endpoint.runners[0].raw(share.checked.part)
        scored.append((share, raw, time.perf_counter() - started))
        answered[share.model] += int(share.idx.size)
    return scored


def _checked(
    chunks: Iterator[pd.DataFrame],
    runner: ModelRunner,
    key: str | None,
    policy: Policy,
    problems: list[Problem],
    router: Router | None = None,
) -> Iterator[tuple[pd.DataFrame, CheckedChunk | None, int, list[Share] | None]]:
    """Each chunk with its validated values (None when it has problems, which go to
    `problems`), its count of bad rows, and under a canary its rows split between the models
    (None: the champion answers them all)."""
    offset = 0
    tally = Tally()
    for frame in chunks:
        before = tally.count
        checked = check_frame(frame, runner.plan, key, policy, offset, problems, tally)
        bad = tally.count - before
        shares = None
        if router is not None and checked is not None and not problems and len(frame):
            shares = router.split(frame, checked)  # in the reading thread, beside validation
        yield frame, checked, bad, shares
        offset += len(frame)


def _rejected(problems: list[Problem], total: int, name: str) -> InvalidInputError:
    counted = "at least " if len(problems) >= MAX_PROBLEMS else ""
    return InvalidInputError(
        f"{counted}{max(total, len(problems))} problem(s) in {name}; nothing was scored",
        problems[:MAX_PROBLEMS],
        max(total, len(problems)),
    )


def _scored_frame(frame: pd.DataFrame, ids: Any, ref: str, columns: dict[str, Any]) -> pd.DataFrame:
    """The chunk's rows, then id (a pyarrow string array), model and the outputs."""
    return pd.concat([frame, _extra(frame, ids, ref, columns, frame.index)], axis=1)


def _extra_names(endpoint: Endpoint, names: set[str]) -> list[str]:
    """The columns a canary's chunks add to the file's: id, model, and every model's outputs
    (the same in every chunk, whichever models answered it)."""
    out = [_free("id", names), _free("model", names)]
    for runner in endpoint.runners:
        for key in output_names(runner.version.task, runner.version.classes):
            name = _free(key, names)
            if name not in out:
                out.append(name)
    return out


def _extra(
    frame: pd.DataFrame, ids: Any, ref: str, columns: dict[str, Any], index: Any
) -> pd.DataFrame:
    """id, model and the outputs of rows of `frame` (each named apart from its columns,
    `_free`), with the index `index`."""
    names = set(frame.columns)
    out = {_free("id", names): ids.to_pandas().array, _free("model", names): ref}
    for key, values in columns.items():
        out[_free(key, names)] = values
    return pd.DataFrame(out, index=index)


def _free(name: str, taken: set[str]) -> str:
    """An added column's name: `name`, or `output_<name>` when the input has a column of
    that name (`output_output_<name>`... if that too), so that every column name is unique."""
    while name in taken:
        name = f"output_{name}"
    return name


def _in_order(frame: pd.DataFrame, parts: list[pd.DataFrame], names: list[str]) -> pd.DataFrame:
    """The chunk's rows, then the models' answers (indexed by position) in the chunk's order
    and with every model's output columns (another model's are empty)."""
    extra = pd.concat(parts).sort_index() if len(parts) > 1 else parts[0]
    extra = extra.reindex(columns=names)
    extra.index = frame.index
    return pd.concat([frame, extra], axis=1)


def _log_entries(
    deployment: str,
    runner: ModelRunner,
    role: str,
    ids: Any,
    checked: CheckedChunk,
    raw: RawOutput,
    took: float,
    rows: int,
    challenger: str | None = None,
) -> Iterator[LogEntry]:
    """A scored chunk's log entries, `rows` rows each: the Python objects the log needs (a
    value per cell, a dict per output) exist for one entry at a time, not the whole chunk.
    Marked as a batch run's (`source`): `took`, the chunk's model call, is no request's
    latency, and request latency statistics leave them out. `challenger`: of `fallback`
    rows, the challenger that failed on them."""
    created = time.time()
    version = runner.version
    numbers, others = checked.part
    probabilities, values = raw.probabilities, raw.values
    for start in range(0, len(ids), rows):
        stop = start + rows
        part = (numbers[start:stop], {name: v[start:stop] for name, v in others.items()})
        piece = RawOutput(
            probabilities=None if probabilities is None else probabilities[start:stop],
            values=None if values is None else values[start:stop],
        )
        entry = log_entry(
            deployment,
            runner,
            role,
            created,
            ids.slice(start, rows).to_pylist(),
            _log_features(part, runner),
            format_outputs(version.task, version.classes, piece),
            took,
            None if checked.keys is None else checked.keys[start:stop],
            part[0],
            challenger,
        )
        yield dataclasses.replace(entry, source=BATCH)


def _log_features(part: Part, runner: ModelRunner) -> dict[str, list[Any]]:
    """The signature's columns (validated values), as the API logs them; the routing key is
    stored beside them (`keys`), never among the features."""
    numbers, others = part
    features: dict[str, list[Any]] = {}
    plan = runner.plan
    for p, j in enumerate(plan.num_idx):
        column = numbers[:, p]
        spec = plan.specs[j]
        values = column.tolist()
        if spec.kind == "integer":
            values = [None if v != v else int(v) for v in values]
        elif spec.nullable:
            values = [None if v != v else v for v in values]
        features[spec.name] = values
    for name, values in others.items():
        # a file's text column is a pandas array (missing as NaN): the log keeps a list
        listed = type(values) is list
        features[name] = values if listed else values.to_numpy(object, na_value=None).tolist()
    return features
