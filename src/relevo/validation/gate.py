"""The pre-production gate: a model version tested on a sample before it serves.

`validate_version` loads the version exactly as a server does (`relevo.serving.pool.load_runner`:
the artifact's sha256 checked, the flavor's loader, the same runner), then checks, in order:

- **signature**: every row of the sample fits the version's input signature (the batch-scoring
  rules); the first problems are named by row and column, all are counted (the check's value),
  and nothing else is measured;
- **metrics**: with labels (`target`), every metric of the task on the served outputs, each
  bound (`Bound`: a floor or a ceiling) checked;
- **latency**: the p99 of single-row calls (validate + score + format, as one JSON row is served:
  the rows as a client that read the sample by the signature sends them) and of calls of the
  server's largest micro-batch, against a budget when one is given;
- **against**: another version scored on the same rows; each compared metric (the bounded ones,
  else the task's primary metric) may be worse than the other's by at most `tolerance`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from relevo.context import Relevo
from relevo.errors import InvalidInputError, Problem
from relevo.registry.flavors.base import RawOutput
from relevo.serving.frame_check import Tally, check_frame
from relevo.serving.frames import Part
from relevo.serving.pool import load_runner
from relevo.serving.records import frame_to_records
from relevo.serving.runner import ModelRunner
from relevo.serving.validation import Plan, Policy, validate_rows
from relevo.validation.metrics import METRICS, PRIMARY, compute, metric

_CHUNK = 10_000


@dataclass(frozen=True)
class Bound:
    """A limit on a metric: `upper` is a ceiling (`--max`), otherwise a floor (`--min`)."""

    metric: str
    limit: float
    upper: bool = False

    @classmethod
    def parse(cls, text: str, upper: bool) -> Bound:
        """`METRIC=VALUE`, e.g. `roc_auc=0.8`."""
        flag = "--max" if upper else "--min"
        name, sep, value = text.partition("=")
        try:
            limit = float(value)
        except ValueError:
            limit = math.nan
        if not sep or not name.strip() or math.isnan(limit):
            raise InvalidInputError(
                f"{flag} {text!r}: write METRIC=VALUE, e.g. {flag} roc_auc=0.8",
                [Problem("expected METRIC=VALUE", column=flag)],
            )
        return cls(name.strip().lower(), limit, upper)

    @property
    def text(self) -> str:
        return f"{'<=' if self.upper else '>='} {self.limit:g}"


@dataclass(frozen=True)
class Check:
    """One verdict of the gate."""

    name: str
    passed: bool
    value: float | None = None
    limit: str = ""
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        value = None if self.value is None or math.isnan(self.value) else self.value
        return {
            "name": self.name,
            "passed": self.passed,
            "value": value,
            "limit": self.limit,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Latency:
    """Milliseconds per call measured in this process (no network)."""

    single_p50_ms: float
    single_p99_ms: float
    single_calls: int
    batch_rows: int
    batch_p50_ms: float
    batch_p99_ms: float
    batch_calls: int

    def to_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ValidationReport:
    """What the gate found; `passed` when every check passed."""

    model: str
    rows: int
    target: str | None
    checks: tuple[Check, ...]
    metrics: dict[str, float] = field(default_factory=dict)
    latency: Latency | None = None
    against: str | None = None
    against_metrics: dict[str, float] = field(default_factory=dict)
    #: the first problems of a sample that does not fit (at most 100), by row and column
    problems: tuple[Problem, ...] = ()
    #: how many problems in all: one per bad cell (a column missing from the file is one)
    problem_count: int = 0

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        def clean(values: dict[str, float]) -> dict[str, float | None]:
            return {k: (None if math.isnan(v) else v) for k, v in values.items()}

        return {
            "model": self.model,
            "passed": self.passed,
            "rows": self.rows,
            "target": self.target,
            "checks": [c.to_dict() for c in self.checks],
            "metrics": clean(self.metrics),
            "latency_ms": self.latency.to_dict() if self.latency else None,
            "against": self.against,
            "against_metrics": clean(self.against_metrics),
            "problems": [p.to_dict() for p in self.problems],
            "problem_count": self.problem_count,
        }


def validate_version(
    relevo: Relevo,
    ref: str,
    sample: pd.DataFrame,
    *,
    target: str | None = None,
    bounds: Sequence[Bound] = (),
    max_latency_ms: float | None = None,
    against: str | None = None,
    tolerance: float = 0.01,
    latency_calls: int = 200,
    sample_name: str = "the sample",
) -> ValidationReport:
    """Test version `ref` on `sample` (a DataFrame of rows, with labels in `target`);
    `sample_name` is what messages call it (a file: "the sample holdout.csv")."""
    if sample.empty:
        raise InvalidInputError("the sample has no rows")
    if tolerance < 0:
        raise InvalidInputError(f"--tolerance must be 0 or more, got {tolerance:g}")
    runner = load_runner(relevo, ref)
    version = runner.version
    needed = bool(bounds) or against is not None
    target = _target(version.ref, version.target, target, sample, sample_name, needed)
    # an unknown metric fails before any work; names as the metric table spells them
    bounds = [replace(b, metric=metric(b.metric, version.task).name) for b in bounds]
    features = sample.drop(columns=[target]) if target else sample

    problems, count = _problems(runner, features)
    if problems:
        shown = "; ".join(str(p) for p in problems[:3])
        check = Check("signature", False, float(count), "every row valid", shown)
        return ValidationReport(
            version.ref,
            len(sample),
            target,
            (check,),
            problems=tuple(problems),
            problem_count=count,
        )
    checks = [Check("signature", True, 0.0, "every row valid", f"{len(sample):,} rows fit")]
    metrics: dict[str, float] = {}
    if target:
        metrics = compute(
            version.task, version.classes, _raw(runner, features), sample[target].tolist(), target
        )
        checks += [_bounded(b, metrics[b.metric]) for b in bounds]
    latency = _latency(runner, features, relevo.settings.max_batch_size, latency_calls)
    if max_latency_ms is not None:
        budget = f"<= {max_latency_ms:g} ms"
        for rows, p99, calls in (
            (1, latency.single_p99_ms, latency.single_calls),
            (latency.batch_rows, latency.batch_p99_ms, latency.batch_calls),
        ):
            name = f"latency p99, {rows} row{'s' if rows > 1 else ''}"
            checks.append(Check(name, p99 <= max_latency_ms, p99, budget, f"{calls} calls"))
    other_ref: str | None = None
    other_metrics: dict[str, float] = {}
    if against is not None and target:
        other_ref, other_metrics, compared = _against(
            relevo, version.task, against, features, sample[target].tolist(), target
        )
        if compared is not None:
            checks.append(compared)
        else:
            names = [b.metric for b in bounds] or [PRIMARY[version.task]]
            for name in dict.fromkeys(names):
                checks.append(
                    _compare(name, metrics[name], other_metrics[name], other_ref, tolerance)
                )
    return ValidationReport(
        version.ref, len(sample), target, tuple(checks), metrics, latency, other_ref, other_metrics
    )


def _target(
    ref: str,
    registered: str | None,
    given: str | None,
    sample: pd.DataFrame,
    name: str,
    needed: bool,
) -> str | None:
    """The label column: the one given, else the one the version was registered with when
    the sample has it; refused, saying which column is missing where, when labels are needed
    and there are none."""
    if given is not None:
        if given not in sample.columns:
            raise InvalidInputError(
                f"target column {given!r} is not in {name} (its columns: {_columns(sample)})"
            )
        return given
    if registered and registered in sample.columns:
        return registered
    if needed and registered:
        raise InvalidInputError(
            f"{name} has no column {registered!r}, the target {ref} was registered with, "
            "and metric limits and --against need its labels (the sample's columns: "
            f"{_columns(sample)}): add it, or name the column that holds the labels with "
            "--target COLUMN"
        )
    if needed:
        raise InvalidInputError(
            f"metric limits and --against need labels: {ref} was registered without a target, "
            f"so name the column of {name} that holds them with --target COLUMN"
        )
    return None


def _columns(frame: pd.DataFrame, shown: int = 12) -> str:
    names = [str(c) for c in frame.columns]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _problems(runner: ModelRunner, frame: pd.DataFrame) -> tuple[list[Problem], int]:
    """The first problems of the sample (at most MAX_PROBLEMS), and how many there are."""
    problems: list[Problem] = []
    tally = Tally()
    for start in range(0, len(frame), _CHUNK):
        chunk = frame.iloc[start : start + _CHUNK]
        check_frame(chunk, runner.plan, None, Policy(), start, problems, tally)
    return problems, tally.count


def _raw(runner: ModelRunner, frame: pd.DataFrame) -> RawOutput:
    """The model's outputs on every row, scored as the server scores (validated input)."""
    parts: list[RawOutput] = []
    for start in range(0, len(frame), _CHUNK):
        checked = check_frame(
            frame.iloc[start : start + _CHUNK], runner.plan, None, Policy(), 0, []
        )
        assert checked is not None  # the signature check passed
        parts.append(runner.raw(checked.part))
    if parts[0].values is not None:
        return RawOutput(values=np.concatenate([p.values for p in parts if p.values is not None]))
    probs = [p.probabilities for p in parts if p.probabilities is not None]
    return RawOutput(probabilities=np.concatenate(probs))


def _bounded(bound: Bound, value: float) -> Check:
    if math.isnan(value):
        return Check(bound.metric, False, value, bound.text, "undefined on this sample")
    ok = value <= bound.limit if bound.upper else value >= bound.limit
    return Check(bound.metric, ok, value, bound.text)


def _latency(runner: ModelRunner, frame: pd.DataFrame, batch_rows: int, calls: int) -> Latency:
    """Single-row calls as a server answers one JSON row (validate, score, format), and calls
    of its largest micro-batch; a few warm-up calls first, not counted."""
    plan = runner.plan
    checked = check_frame(frame.head(max(calls, batch_rows)), plan, None, Policy(), 0, [])
    assert checked is not None  # the signature check passed
    records = _as_sent(checked.part, plan)

    def timed(rows: list[dict[str, Any]]) -> float:
        started = time.perf_counter()
        validated = validate_rows(rows, plan)
        runner.run((validated.numbers, validated.others), validated.n)
        return (time.perf_counter() - started) * 1000.0

    for i in range(5):
        timed([records[i % len(records)]])
    single = [timed([records[i % len(records)]]) for i in range(calls)]
    batch = (records * (batch_rows // len(records) + 1))[:batch_rows]
    batch_calls = max(calls // 10, 5)
    batched = [timed(batch) for _ in range(batch_calls)]
    return Latency(
        float(np.percentile(single, 50)),
        float(np.percentile(single, 99)),
        calls,
        batch_rows,
        float(np.percentile(batched, 50)),
        float(np.percentile(batched, 99)),
        batch_calls,
    )


def _as_sent(part: Part, plan: Plan) -> list[dict[str, Any]]:
    """Checked rows as a JSON client that read them by the signature sends them: numbers as
    numbers (whole ones in an integer column as ints), text as text ("01", not 1), missing as
    null; the JSON rules then take them as the signature check did."""
    numbers, others = part
    data: dict[str, Any] = {}
    for position, j in enumerate(plan.num_idx):
        column = numbers[:, position]
        if plan.specs[j].kind == "integer" and not np.isnan(column).any():
            column = column.astype(np.int64)
        data[plan.names[j]] = column
    for _j, name, _allowed in plan.others:
        data[name] = np.asarray(others[name], dtype=object)
    return frame_to_records(pd.DataFrame(data, columns=plan.names))


def _against(
    relevo: Relevo, task: str, ref: str, frame: pd.DataFrame, y: list[Any], target: str
) -> tuple[str, dict[str, float], Check | None]:
    """The other version's metrics on the same rows, or a failed check when it cannot score
    them."""
    other = load_runner(relevo, ref)
    if other.version.task != task:
        raise InvalidInputError(
            f"cannot compare with {other.ref}: it is a {other.version.task} model, this one "
            f"is {task}"
        )
    problems, count = _problems(other, frame)
    if problems:
        detail = f"{count:,} problem(s) for {other.ref}: {problems[0]}"
        return other.ref, {}, Check("against", False, None, other.ref, detail)
    values = compute(task, other.version.classes, _raw(other, frame), y, target)
    return other.ref, values, None


def _compare(name: str, mine: float, theirs: float, ref: str, tolerance: float) -> Check:
    higher = METRICS[name].higher_is_better
    worse = (theirs - mine) if higher else (mine - theirs)
    limit = f"{'>=' if higher else '<='} {theirs:.4g}{'-' if higher else '+'}{tolerance:g}"
    if math.isnan(worse):
        return Check(f"{name} vs {ref}", False, mine, limit, "undefined on this sample")
    detail = (
        f"{ref} has {theirs:.4g}; this version is {abs(worse):.4g} "
        f"{'worse' if worse > 0 else 'better'} (tolerance {tolerance:g})"
    )
    return Check(f"{name} vs {ref}", worse <= tolerance, mine, limit, detail)
