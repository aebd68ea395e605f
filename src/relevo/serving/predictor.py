"""The predictor: validate once, route each row to a model, predict, answer in order, log.

Routing sits at the centre: `assign(deployment, keys, n)` gives each row the index of the model
that answers it (0 champion, 1 challenger; `relevo.routing` writes the strategies). The rows of
a request are split between the models' micro-batchers and the answers put back in request
order, each row naming its model; the log gets one entry per (request, model) with its role.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, NamedTuple

import numpy as np

from relevo.errors import ConflictError
from relevo.routing.assign import mirror
from relevo.routing.deployment import Deployment
from relevo.serving.batching import RIDER_DEADLINE_S
from relevo.serving.ids import new_ids
from relevo.serving.log import LogEntry, PredictionLog
from relevo.serving.metrics import ServingMetrics
from relevo.serving.pool import ROLES, Endpoint, ModelPool
from relevo.serving.runner import ModelRunner
from relevo.serving.shadow import Job as ShadowJob
from relevo.serving.shadow import ShadowWorker
from relevo.serving.validation import Plan, Policy, Validated, take_rows, validate_rows

log = logging.getLogger(__name__)

#: the role of rows a challenger failed on, answered by the champion instead
FALLBACK = "fallback"
#: per row, the index of the endpoint runner that answers it
Assign = Callable[[Deployment, Sequence[Any] | None, int], np.ndarray]
#: a request above this many rows is validated in a worker thread, off the event loop
VALIDATE_THREAD_ROWS = 2048


def all_champion(deployment: Deployment, keys: Sequence[Any] | None, n: int) -> np.ndarray:
    """The basic strategy: the champion answers every row."""
    return np.zeros(n, dtype=np.int8)


@dataclass(slots=True, eq=False)
class LogTag:
    """What the log needs of one request's rows for one model besides their outputs. The
    micro-batcher hands it back with the outputs in the thread that scored the batch, where
    `Predictor.log_scored` makes the entries of the whole batch and queues them with one spool
    write; `logged` tells the request it has nothing left to log."""

    endpoint: Endpoint
    model: int
    role: str
    idx: np.ndarray | None
    ids: list[str]
    part: Validated
    rows: Any
    started: float
    logged: bool = False


class Group(NamedTuple):
    """The rows of a request one model answered: its index, the rows' positions (None: all),
    their validated values, the outputs, the role they are logged with, and their log tag."""

    model: int
    idx: np.ndarray | None
    part: Validated
    outputs: list[Any]
    role: str
    tag: LogTag | None = None


class Answer(NamedTuple):
    predictions: list[dict[str, Any]]
    #: the champion's ref (every row also names the model that answered it)
    model: str
    validated: Validated


class Predictor:
    """Answers prediction requests for the pool's deployments."""

    def __init__(
        self,
        pool: ModelPool,
        *,
        policy: Policy,
        prediction_log: PredictionLog | None = None,
        metrics: ServingMetrics | None = None,
        assign: Assign = all_champion,
        shadow: ShadowWorker | None = None,
    ) -> None:
        self.pool = pool
        self.policy = policy
        self.log = prediction_log
        self.metrics = metrics
        self.assign = assign
        self._failed_once: set[tuple[str, str]] = set()
        self._unkeyed_once: set[str] = set()
        #: scores a shadow challenger's mirrored rows after the answer (None: no shadows)
        self.shadow = shadow

    def _mirror(self, endpoint: Endpoint, rows: Any, validated: Validated, ids: list[str]) -> None:
        """Hand the mirrored rows to the shadow worker; never waits, never raises."""
        if len(endpoint.runners) < 2 or self.shadow is None:
            return  # the shadow could not load: the champion serves alone
        chosen = np.flatnonzero(mirror(endpoint.deployment, validated.keys, validated.n))
        if not chosen.size:
            return
        self.shadow.offer(ShadowJob(endpoint, rows, validated, chosen, ids))

    async def predict(
        self,
        name: str,
        rows: Any,
        started: float | None = None,
        protocol: str = "v1",
        force: int | None = None,
    ) -> Answer:
        """Validate, route, score and log `rows` (JSON objects) for deployment `name`."""
        started = time.perf_counter() if started is None else started
        endpoint = self.pool.endpoint(name)
        champion = endpoint.runners[0]
        key_column = endpoint.deployment.key_column
        profiles = getattr(self.log, "profiles", None)
        try:
            validated = await self._validate(rows, champion.plan, key_column)
        except Exception as exc:
            if profiles is not None:
                profiles.tally.rejected(name, _model(champion), rows, exc)
            raise
        n = validated.n
        if profiles is not None and type(rows) is list:
            # validation saw every model column in every row: a row with more keys than
            # those (and the routing key) carries columns the model does not use
            width = len(champion.plan.names) + (key_column is not None)
            if max(map(len, rows)) > width:
                known = champion.plan.known | {key_column} if key_column else champion.plan.known
                profiles.tally.unused(name, _model(champion), rows, known)
        assignment: np.ndarray | None = None
        if force is not None:
            assignment = _forced(endpoint, force, n)
        elif len(endpoint.runners) > 1:  # one model: nothing to route
            assignment = self.assign(endpoint.deployment, validated.keys, n)
            if validated.keys is not None and None in validated.keys:
                self._unkeyed(name, key_column, validated.keys.count(None))
        ids = new_ids(n)
        # count_nonzero: a quarter of `any`'s cost on the one-row arrays of most requests
        if assignment is None or not np.count_nonzero(assignment):
            tag = None
            if self.log is not None:
                tag = LogTag(endpoint, 0, ROLES[0], None, ids, validated, rows, started)
            try:
                outputs = await champion.batcher.submit(
                    (validated.numbers, validated.others), n, tag
                )
            except Exception:
                if profiles is not None:
                    profiles.tally.failed(name, _model(champion), ROLES[0], n)
                raise
            predictions = _answers(ids, champion.ref, outputs)
            groups = [Group(0, None, validated, outputs, ROLES[0], tag)]
        else:
            predictions, groups = await self._split(
                endpoint, rows, validated, assignment, ids, started, fallback=force is None
            )
        latency = time.perf_counter() - started
        if self.shadow is not None and endpoint.deployment.strategy == "shadow" and not force:
            # rows an admin sent to the challenger itself have nothing to be compared with
            self._mirror(endpoint, rows, validated, ids)
        if self.log is not None:
            # most requests were queued where their batch was scored: nothing left to log
            done = groups[0].tag if len(groups) == 1 else None
            if done is None or not done.logged:
                await self._log(endpoint, rows, groups, ids, latency)
        if self.metrics is not None:
            self.observe_answer(name, endpoint, groups, protocol, latency, validated)
        return Answer(predictions, champion.ref, validated)

    async def _validate(self, rows: Any, plan: Plan, key_column: str | None) -> Validated:
        if type(rows) is list and len(rows) > VALIDATE_THREAD_ROWS:
            # a large request (or its long list of problems) must not stall the event loop
            return await asyncio.to_thread(validate_rows, rows, plan, key_column, self.policy)
        return validate_rows(rows, plan, key_column, self.policy)

    async def _split(
        self,
        endpoint: Endpoint,
        rows: list[dict[str, Any]],
        validated: Validated,
        assignment: np.ndarray,
        ids: list[str],
        started: float,
        fallback: bool = True,
    ) -> tuple[list[dict[str, Any]], list[Group]]:
        """Score each model's rows with it, concurrently; the answers in request order.

        Rows the challenger fails on (its batch raised, or its own validation refused them)
        are answered by the champion instead: the caller never sees a challenger's error. They
        are logged with the role `fallback` (which the gates count as challenger errors) and
        counted in `relevo_challenger_failures_total`. Without `fallback` (an admin asked for
        the challenger itself) its error is the request's.
        """
        first = int(assignment[0])
        if assignment.size == 1:  # one-row requests, most of them: no arrays to build
            picks = [(first, _ROW_ZERO)]
        elif (assignment == first).all():
            picks = [(first, np.arange(validated.n))]  # every row to one model
        else:
            picks = [(m, np.flatnonzero(assignment == m)) for m in np.unique(assignment).tolist()]

        async def score(
            m: int, idx: np.ndarray, role: str
        ) -> tuple[Validated, list[Any], LogTag | None]:
            runner = endpoint.runners[m]
            part = _subset(rows, validated, idx, runner, endpoint, self.policy)
            # a request split between models is logged once all its parts are answered, with
            # the request's latency for each (the gates compare the models' latencies)
            tag = None
            if whole and self.log is not None:
                tag = LogTag(endpoint, m, role, idx, ids, part, rows, started)
            # the challenger's rows ride in the champion's batches and are scored in the
            # challenger's own thread, beside them (see `MicroBatcher`); one that does not
            # answer in time is failed over to the champion
            outputs = await endpoint.runners[0].batcher.submit(
                (part.numbers, part.others),
                part.n,
                tag,
                runner.batcher,
                RIDER_DEADLINE_S if m else None,
            )
            return part, outputs, tag

        results: list[Any]
        whole = len(picks) == 1
        if whole:  # no task to gather: the request's own coroutine scores it
            try:
                results = [await score(picks[0][0], picks[0][1], ROLES[picks[0][0]])]
            except Exception as exc:
                results = [exc]
        else:
            results = await asyncio.gather(
                *(score(m, idx, ROLES[m]) for m, idx in picks), return_exceptions=True
            )
        predictions: list[Any] = [None] * validated.n
        groups: list[Group] = []
        for (m, idx), result in zip(picks, results, strict=True):
            role = ROLES[m]
            if isinstance(result, BaseException):
                profiles = getattr(self.log, "profiles", None)
                if profiles is not None and isinstance(result, Exception):
                    profiles.tally.failed(
                        endpoint.deployment.name, _model(endpoint.runners[m]), role, int(idx.size)
                    )
                if m == 0 or not fallback or not isinstance(result, Exception):
                    raise result  # the champion's own failure (or the asked-for model's)
                self._challenger_failed(endpoint, int(idx.size), result)
                m, role = 0, FALLBACK
                result = await score(0, idx, FALLBACK)
            part, outputs, tag = result
            ref = endpoint.runners[m].ref
            for i, out in zip(idx.tolist(), outputs, strict=True):
                predictions[i] = {"id": ids[i], "model": ref, **out}
            groups.append(Group(m, idx, part, outputs, role, tag))
        return predictions, groups

    def log_scored(self, scored: list[tuple[Any, list[Any]]]) -> None:
        """The micro-batchers' hook (`MicroBatcher.on_scored`): the log entries of a scored
        batch's requests, queued with one spool write where the batch was scored (a worker
        thread under load), before any of them is answered. The requests of one deployment,
        model and role make one entry (serialised once, each row with its request's latency).
        A request whose entry is not queued here (the log is full or closed) logs it itself,
        waiting for room."""
        plog = self.log
        if plog is None:
            return
        now = time.time()
        clock = time.perf_counter()
        groups: dict[tuple[int, int, str], list[tuple[LogTag, list[Any]]]] = {}
        for tag, outputs in scored:
            if isinstance(tag, LogTag):
                groups.setdefault((id(tag.endpoint), tag.model, tag.role), []).append(
                    (tag, outputs)
                )
        entries = [self._batch_entry(group, now, clock) for group in groups.values()]
        if entries and plog.offer_many(entries):
            profiles = getattr(plog, "profiles", None)
            if profiles is not None and not profiles.direct:
                profiles = None
            for group in groups.values():
                for tag, outputs in group:
                    tag.logged = True
                    if profiles is not None:
                        # the validated columns as they are: profiled in the writer thread
                        runner = tag.endpoint.runners[tag.model]
                        profiles.hand(
                            tag.endpoint.deployment.name, _model(runner), tag.role, now,
                            runner.plan.num_tuple, tag.part.numbers, tag.part.others, outputs,
                        )  # fmt: skip

    def _batch_entry(
        self, group: list[tuple[LogTag, list[Any]]], now: float, clock: float
    ) -> LogEntry:
        """One entry for the requests of `group` (one deployment, model and role)."""
        endpoint = group[0][0].endpoint
        dep = endpoint.deployment
        runner = endpoint.runners[group[0][0].model]
        extra_fields = tuple(getattr(dep, "log_extra", ()) or ())

        def rows_of(tag: LogTag) -> Any:
            if extra_fields and tag.idx is not None:  # the request fields only extras need
                return [tag.rows[i] for i in tag.idx.tolist()]
            return tag.rows

        challenger = fallen_from(endpoint, group[0][0].role)
        if len(group) == 1:
            tag, outputs = group[0]
            return _entry(
                dep.name, runner, tag.role, now, tag.ids, tag.part, rows_of(tag), outputs,
                clock - tag.started, extra_fields, challenger,
            )  # fmt: skip
        tags = [tag for tag, _ in group]
        features: dict[str, Sequence[Any]] | None = None
        extras = [f for f in extra_fields if f not in runner.plan.known]
        if extras or not all(t.part.floats for t in tags):
            # the requests' rows end to end, transposed: one C call for the batch's columns
            rows = chain.from_iterable(t.part.rows for t in tags)
            features = dict(zip(runner.plan.names, zip(*rows, strict=True), strict=True))
            for f in extras:
                features[f] = [r.get(f) for t in tags for r in rows_of(t)]
        # else every value is a float of the number block: the log's writer makes the
        # features from it, off the request path (the same JSON, `entries.encode`)
        keyed = tags[0].part.keys is not None
        return LogEntry(
            dep.name,
            runner.version.name,
            runner.version.version,
            now,
            list(chain.from_iterable(t.ids for t in tags)),
            features,
            list(chain.from_iterable(outputs for _, outputs in group)),
            [1000.0 * (clock - t.started) for t in tags for _ in range(t.part.n)],
            list(chain.from_iterable(t.part.keys or () for t in tags)) if keyed else None,
            tags[0].role,
            *_number_block(runner, [t.part.numbers for t in tags]),
            challenger=challenger,
        )

    def _unkeyed(self, name: str, key_column: str | None, rows: int) -> None:
        """Rows of a keyed deployment sent without their key: split at random, so a customer
        may meet both models; counted, and said once per deployment."""
        if self.metrics is not None:
            self.metrics.unkeyed_rows.labels(name).inc(rows)
        if name not in self._unkeyed_once:
            self._unkeyed_once.add(name)
            log.warning(
                "deployment %r routes by %r, but %d row(s) came without it: such rows are split "
                "between the models at random, not sticky (counted in "
                "relevo_routing_key_missing_total)",
                name,
                key_column,
                rows,
            )

    def _challenger_failed(self, endpoint: Endpoint, rows: int, exc: Exception) -> None:
        ref = endpoint.runners[1].ref
        name = endpoint.deployment.name
        if self.metrics is not None:
            self.metrics.challenger_failures.labels(name, ref).inc(rows)
        if (name, ref) not in self._failed_once:  # once per challenger: the counter says more
            self._failed_once.add((name, ref))
            log.warning(
                "challenger %s of %r failed on %d rows (the champion answered them): %s",
                ref,
                name,
                rows,
                exc,
            )

    async def _log(
        self,
        endpoint: Endpoint,
        rows: Any,
        groups: list[Group],
        ids: list[str],
        latency: float,
    ) -> None:
        assert self.log is not None
        dep = endpoint.deployment
        extra_fields = tuple(getattr(dep, "log_extra", ()) or ())
        now = time.time()
        for m, idx, part, outputs, role, tag in groups:
            if tag is not None and tag.logged:  # queued where its batch was scored
                continue
            runner = endpoint.runners[m]
            sub_rows = rows if idx is None else [rows[i] for i in idx.tolist()]
            sub_ids = ids if idx is None else [ids[i] for i in idx.tolist()]
            entry = _entry(
                dep.name,
                runner,
                role,
                now,
                sub_ids,
                part,
                sub_rows,
                outputs,
                latency,
                extra_fields,
                fallen_from(endpoint, role),
            )
            if not self.log.offer(entry):  # full: wait for room (back-pressure)
                await self.log.put(entry)
            profiles = getattr(self.log, "profiles", None)
            if profiles is not None and profiles.direct:
                # the validated columns as they are: profiled in the writer thread, no JSON
                profiles.hand(
                    dep.name, _model(runner), role, now, runner.plan.num_tuple, part.numbers,
                    part.others, outputs,
                )  # fmt: skip

    def observe_answer(
        self,
        name: str,
        endpoint: Endpoint,
        groups: list[Group],
        protocol: str,
        latency: float,
        validated: Validated,
    ) -> None:
        m = self.metrics
        assert m is not None
        champion = endpoint.runners[0].ref
        m.request(name, champion, protocol, "200").inc()
        m.latency_of(name).observe(latency)
        for index, _idx, part, _outputs, _role, _tag in groups:
            m.rows_of(name, endpoint.runners[index].ref).inc(part.n)
        q = validated.quality
        if q:
            for col, count in q.unseen_categories.items():
                m.quality.labels(name, col, "unseen_category").inc(count)
            for col, count in q.out_of_range.items():
                m.quality.labels(name, col, "out_of_range").inc(count)


#: the positions of a one-row request (read-only: shared by every such request)
_ROW_ZERO = np.zeros(1, dtype=np.intp)
_ROW_ZERO.flags.writeable = False


def _model(runner: ModelRunner) -> tuple[str, int]:
    return runner.version.name, runner.version.version


def fallen_from(endpoint: Endpoint, role: str) -> str | None:
    """The challenger a `fallback` entry's rows fell back from (the endpoint's, which routed
    them; the deployment may have another by the time they are stored), None for other
    roles: the gates charge a fallback row to the challenger that failed on it alone."""
    return endpoint.runners[1].ref if role == FALLBACK else None


def _forced(endpoint: Endpoint, force: int, n: int) -> np.ndarray:
    """Every row to the model a caller asked for (an admin testing a challenger)."""
    if force >= len(endpoint.runners):
        raise ConflictError(f"deployment {endpoint.deployment.name!r} has no challenger loaded")
    return np.full(n, force, dtype=np.int8)


def _answers(ids: list[str], ref: str, outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": i, "model": ref, **o} for i, o in zip(ids, outputs, strict=True)]


def _subset(
    rows: Any,
    validated: Validated,
    idx: np.ndarray,
    runner: ModelRunner,
    endpoint: Endpoint,
    policy: Policy,
) -> Validated:
    """The validated rows `idx` for `runner`: sliced when it has the champion's signature,
    validated against its own otherwise (a challenger trained on other columns)."""
    same = runner.same_input(endpoint.runners[0])
    if same and idx.size == validated.n:  # every row: nothing to slice
        return validated
    picks = idx.tolist()
    if not same:
        return validate_rows(
            [rows[i] for i in picks], runner.plan, endpoint.deployment.key_column, policy
        )
    return take_rows(validated, idx)


def _entry(
    deployment: str,
    runner: ModelRunner,
    role: str,
    created_at: float,
    ids: list[str],
    part: Validated,
    rows: Any,
    outputs: list[dict[str, Any]],
    latency: float,
    extra_fields: tuple[str, ...],
    challenger: str | None = None,
) -> LogEntry:
    """The one place a log entry is made: the validated columns, plus the request fields the
    deployment allows (`log_extra`), never the whole raw request."""
    extra = {f: [r.get(f) for r in rows] for f in extra_fields if f not in runner.plan.known}
    features = dict(zip(runner.plan.names, part.columns, strict=True))
    features.update(extra)
    return log_entry(
        deployment, runner, role, created_at, ids, features, outputs, latency, part.keys,
        part.numbers, challenger,
    )  # fmt: skip


def log_entry(
    deployment: str,
    runner: ModelRunner,
    role: str,
    created_at: float,
    ids: Sequence[str],
    features: Mapping[str, Sequence[Any]],
    outputs: Sequence[dict[str, Any]],
    latency: float,
    keys: Sequence[Any] | None,
    numbers: np.ndarray | None = None,
    challenger: str | None = None,
) -> LogEntry:
    """A prediction log entry (the API's and batch scoring's alike). `numbers`: the rows'
    validated number columns as one matrix (`Validated.numbers`, see `_number_block`);
    `challenger`: of a `fallback` entry, the challenger that failed on its rows."""
    version = runner.version
    return LogEntry(
        deployment,
        version.name,
        version.version,
        created_at,
        ids,
        features,
        outputs,
        latency * 1000.0,
        keys,
        role,
        *_number_block(runner, [] if numbers is None else [numbers]),
        challenger=challenger,
    )


def _number_block(
    runner: ModelRunner, parts: list[np.ndarray]
) -> tuple[tuple[str, ...], np.ndarray | None]:
    """What an entry carries for its profiles (`LogEntry.numeric`, `.numbers`): an
    all-numeric model's matrix of its rows, joined from `parts`; nothing for the others,
    whose profiles parse the features for their text columns anyway."""
    if not parts or not runner.plan.all_numeric:
        return (), None
    return runner.plan.num_tuple, parts[0] if len(parts) == 1 else np.concatenate(parts)
