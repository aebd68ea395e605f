"""Micro-batching: concurrent callers share model calls and each gets exactly its own rows."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from relevo.serving.batching import MicroBatcher, RiderTimeout


def _runner(calls: list[int]):
    def run(columns, n):
        calls.append(n)
        return [{"echo": x} for x in columns["x"]]

    return run


def test_concurrent_callers_share_calls_and_get_their_own_rows():
    calls: list[int] = []
    batcher = MicroBatcher(_runner(calls), max_rows=64)

    async def scenario():
        return await asyncio.gather(*[batcher.submit({"x": [i, i + 1000]}, 2) for i in range(40)])

    answers = asyncio.run(scenario())
    assert answers == [[{"echo": i}, {"echo": i + 1000}] for i in range(40)]
    assert sum(calls) == 80
    assert len(calls) < 40  # coalesced
    assert max(calls) <= 64


def test_a_request_larger_than_the_batch_goes_alone():
    calls: list[int] = []
    batcher = MicroBatcher(_runner(calls), max_rows=4)

    async def scenario():
        return await asyncio.gather(
            batcher.submit({"x": list(range(10))}, 10), batcher.submit({"x": [99]}, 1)
        )

    big, small = asyncio.run(scenario())
    assert [r["echo"] for r in big] == list(range(10))
    assert small == [{"echo": 99}]
    assert calls == [10, 1]


def test_a_model_error_reaches_every_caller_of_the_batch():
    def boom(columns, n):
        raise ValueError("model exploded")

    batcher = MicroBatcher(boom)

    async def scenario():
        return await asyncio.gather(
            *[batcher.submit({"x": [i]}, 1) for i in range(3)], return_exceptions=True
        )

    results = asyncio.run(scenario())
    assert all(isinstance(r, ValueError) for r in results)


def test_max_wait_fills_batches_and_a_full_batch_does_not_wait():
    calls: list[int] = []
    # an hour's wait: only a full batch can be scored during the test
    batcher = MicroBatcher(_runner(calls), max_rows=10, max_wait_s=3600)

    async def scenario():
        tasks = []
        for i in range(10):
            tasks.append(asyncio.ensure_future(batcher.submit({"x": [i]}, 1)))
            await asyncio.sleep(0)  # each caller arrives in a later turn of the event loop
            assert calls == []  # nobody is scored before the batch is full
        return await asyncio.gather(*tasks)

    answers = asyncio.run(scenario())
    assert [a[0]["echo"] for a in answers] == list(range(10))
    assert calls == [10]


def test_a_partial_batch_is_scored_when_the_wait_ends():
    calls: list[int] = []
    batcher = MicroBatcher(_runner(calls), max_rows=100, max_wait_s=0.01)

    async def scenario():
        return await asyncio.gather(*[batcher.submit({"x": [i]}, 1) for i in range(3)])

    assert [a[0]["echo"] for a in asyncio.run(scenario())] == [0, 1, 2]
    assert calls == [3]  # submitted in one turn: one call once the wait ended


@pytest.mark.parametrize("rows", [3000])
def test_large_batches_run_off_the_event_loop(rows):
    import threading

    seen: list[str] = []

    def run(columns, n):
        seen.append(threading.current_thread().name)
        return [{"echo": x} for x in columns["x"]]

    batcher = MicroBatcher(run)
    answer = asyncio.run(batcher.submit({"x": list(range(rows))}, rows))
    assert len(answer) == rows
    assert seen and seen[0] != threading.main_thread().name


def test_a_lone_request_runs_on_the_event_loop_only_when_its_model_is_known_quick():
    import threading

    on_loop: list[bool] = []
    pause = {"s": 0.0}

    def run(columns, n):
        on_loop.append(threading.current_thread() is threading.main_thread())
        time.sleep(pause["s"])
        return [{"echo": x} for x in columns["x"]]

    batcher = MicroBatcher(run)

    def one() -> list:
        return asyncio.run(batcher.submit({"x": [1]}, 1))

    one()  # its speed unknown: a worker thread (a first call may be slow, a warm-up)
    one()  # quick so far: on the event loop
    pause["s"] = 0.6
    one()  # still known as quick: on the event loop, and now known as slow
    assert one() == [{"echo": 1}]  # a slow model: a worker thread, probes keep answering
    assert on_loop == [False, True, True, False]


def test_one_bad_request_fails_only_itself_not_its_batch():
    calls: list[int] = []

    def picky(columns, n):
        calls.append(n)
        if "bad" in columns["x"]:
            raise ValueError("the model cannot score 'bad'")
        return [{"echo": x} for x in columns["x"]]

    batcher = MicroBatcher(picky, max_rows=64)

    async def scenario():
        return await asyncio.gather(
            *[batcher.submit({"x": ["bad" if i == 3 else i]}, 1) for i in range(8)],
            return_exceptions=True,
        )

    results = asyncio.run(scenario())
    assert isinstance(results[3], ValueError)
    assert [r for i, r in enumerate(results) if i != 3] == [
        [{"echo": i}] for i in range(8) if i != 3
    ]
    assert calls[0] == 8  # tried together first


def test_a_model_answering_the_wrong_number_of_rows_is_an_error_not_a_mixup():
    batcher = MicroBatcher(lambda columns, n: [{"echo": 1}])

    async def scenario():
        return await asyncio.gather(
            *[batcher.submit({"x": [i, i]}, 2) for i in range(3)], return_exceptions=True
        )

    assert all(isinstance(r, RuntimeError) for r in asyncio.run(scenario()))


def _tagged_runner(
    name: str, calls: list[tuple[str, int]], fail: bool = False, seconds: float = 0.0
):
    import time

    def run(columns, n):
        calls.append((name, n))
        if seconds:
            time.sleep(seconds)  # a model call that takes a while: the next batch queues
        if fail:
            raise ValueError(f"{name} failed")
        return [{"by": name, "echo": x} for x in columns["x"]]

    return run


def test_rider_rows_are_scored_by_their_own_model_in_the_hosts_calls():
    calls: list[tuple[str, int]] = []
    champion = MicroBatcher(_tagged_runner("champion", calls), max_rows=64)
    challenger = MicroBatcher(_tagged_runner("challenger", calls), max_rows=64)
    sizes: dict[str, list[int]] = {"champion": [], "challenger": []}
    champion.on_batch = sizes["champion"].append
    challenger.on_batch = sizes["challenger"].append
    hooked: list[list[tuple[str, list]]] = []
    champion.on_scored = hooked.append

    async def scenario():
        return await asyncio.gather(
            *[
                champion.submit({"x": [i]}, 1, f"t{i}", challenger if i % 4 == 0 else None)
                for i in range(40)
            ]
        )

    answers = asyncio.run(scenario())
    for i, answer in enumerate(answers):
        assert answer == [{"by": "challenger" if i % 4 == 0 else "champion", "echo": i}]
    # each model's batch sizes are counted under that model, and calls are shared
    assert sum(sizes["champion"]) == 30 and sum(sizes["challenger"]) == 10
    assert len(calls) < 40
    # the log hook saw every tagged caller once, with its own outputs, one model's rows a call
    seen = [(tag, outputs) for batch in hooked for tag, outputs in batch]
    assert sorted(seen) == sorted((f"t{i}", answers[i]) for i in range(40))
    assert all(len({o[0]["by"] for _, o in batch}) == 1 for batch in hooked)


def test_a_failing_rider_fails_only_its_own_callers():
    calls: list[tuple[str, int]] = []
    champion = MicroBatcher(_tagged_runner("champion", calls), max_rows=64)
    challenger = MicroBatcher(_tagged_runner("challenger", calls, fail=True), max_rows=64)

    async def scenario():
        return await asyncio.gather(
            *[
                champion.submit({"x": [i]}, 1, None, challenger if i % 2 else None)
                for i in range(10)
            ],
            return_exceptions=True,
        )

    answers = asyncio.run(scenario())
    for i, answer in enumerate(answers):
        if i % 2:
            assert isinstance(answer, ValueError) and str(answer) == "challenger failed"
        else:
            assert answer == [{"by": "champion", "echo": i}]


def test_model_calls_run_on_one_native_thread_and_other_threads_keep_theirs():
    """OpenMP's threads fight the server's own for the cores (seconds of tail on a busy
    machine): a model call through the batcher sees one native thread, a lone request on the
    event loop and a batch in a worker thread alike; a thread that scores no server batch (batch
    scoring's) keeps its pool."""
    import threading

    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    seen: list[int] = []

    def run(columns, n):
        seen.append(_openmp_effective_n_threads())
        return [{"echo": x} for x in columns["x"]]

    def in_a_new_thread() -> int:
        found: list[int] = []
        worker = threading.Thread(target=lambda: found.append(_openmp_effective_n_threads()))
        worker.start()
        worker.join()
        return found[0]

    untouched = in_a_new_thread()
    assert untouched > 1, "needs a machine with two cores or more"

    def scenario() -> list[object]:
        batcher = MicroBatcher(run, max_rows=8)

        async def both():
            lone = await batcher.submit({"x": [1]}, 1)  # inline, on the event loop
            many = await asyncio.gather(*[batcher.submit({"x": [i]}, 1) for i in range(6)])
            return [lone, many]

        return asyncio.run(both())

    found: list[object] = []
    loop_thread = threading.Thread(target=lambda: found.extend(scenario()))
    loop_thread.start()
    loop_thread.join()
    assert found[0] == [{"echo": 1}] and len(found[1]) == 6
    assert len(seen) >= 2 and set(seen) == {1}
    assert in_a_new_thread() == untouched


def _waves(champion: MicroBatcher, challenger: MicroBatcher, waves: list[tuple[int, int]]):
    """Submit each wave's (own requests, riders) while the previous wave's batch is scored."""

    async def scenario():
        tasks = []
        x = 0
        for own, riders in waves:
            for i in range(own + riders):
                scorer = challenger if i >= own else None
                tasks.append(asyncio.ensure_future(champion.submit({"x": [x]}, 1, None, scorer)))
                x += 1
            await asyncio.sleep(0.02)  # the batch of this wave is being scored (0.05 s)
        return await asyncio.gather(*tasks)

    return asyncio.run(scenario())


def _slow_tagged_runner(name: str, calls: list[tuple[str, int]]):
    """A runner whose calls take 0.05 s (a wave's batch is still being scored when the next
    wave is submitted, see `_waves`)."""
    return _tagged_runner(name, calls, seconds=0.05)


def _by_model(calls: list[tuple[str, int]]) -> dict[str, list[int]]:
    """Each model's call sizes in order (the two models' calls run side by side)."""
    found: dict[str, list[int]] = {}
    for name, n in calls:
        found.setdefault(name, []).append(n)
    return found


def test_a_busy_batch_holds_its_few_riders_for_the_next_batch_once():
    calls: list[tuple[str, int]] = []
    champion = MicroBatcher(_slow_tagged_runner("champion", calls), max_rows=64)
    challenger = MicroBatcher(_slow_tagged_runner("challenger", calls), max_rows=64)

    answers = _waves(champion, challenger, [(8, 1), (8, 1)])

    # every caller gets its own row from its own model
    by = ["champion"] * 8 + ["challenger"] + ["champion"] * 8 + ["challenger"]
    assert answers == [[{"by": b, "echo": i}] for i, b in enumerate(by)]
    # the first batch held its lone rider; the next one scored it with its own rider: one
    # challenger call of two rows where each batch used to make a call of one
    assert _by_model(calls) == {"champion": [8, 8], "challenger": [2]}


def test_a_held_rider_is_not_held_again_and_does_not_wait_for_traffic():
    calls: list[tuple[str, int]] = []
    champion = MicroBatcher(_slow_tagged_runner("champion", calls), max_rows=64)
    challenger = MicroBatcher(_slow_tagged_runner("challenger", calls), max_rows=64)

    # a busy batch holds its rider; then nothing else comes: the rider is scored alone
    answers = _waves(champion, challenger, [(8, 1)])
    assert answers[-1] == [{"by": "challenger", "echo": 8}]
    assert _by_model(calls) == {"champion": [8], "challenger": [1]}


@pytest.mark.parametrize(
    ("own", "riders"),
    [(3, 1), (8, 4)],  # a quiet batch (too few requests of its own); many riders
)
def test_riders_are_not_held_at_low_load_or_when_they_are_many(own, riders):
    calls: list[tuple[str, int]] = []
    champion = MicroBatcher(_slow_tagged_runner("champion", calls), max_rows=64)
    challenger = MicroBatcher(_slow_tagged_runner("challenger", calls), max_rows=64)

    answers = _waves(champion, challenger, [(own, riders)])
    assert [a[0]["by"] for a in answers] == ["champion"] * own + ["challenger"] * riders
    assert _by_model(calls) == {"champion": [own], "challenger": [riders]}


def test_a_slow_rider_never_delays_the_hosts_callers_nor_the_event_loop():
    """A challenger taking 0.4 s a call answers its own rows late; the champion's callers in
    the same batches, and the event loop, do not wait for it."""
    import threading
    import time

    calls: list[tuple[str, int]] = []
    champion = MicroBatcher(_tagged_runner("champion", calls, seconds=0.01), max_rows=64)
    challenger = MicroBatcher(_tagged_runner("challenger", calls, seconds=0.4), max_rows=64)
    threads: set[str] = set()
    inner = challenger._run

    def run(columns, n):
        threads.add(threading.current_thread().name)
        return inner(columns, n)

    challenger._run = run
    done: dict[str, list[float]] = {"champion": [], "challenger": []}

    async def one(i: int, scorer) -> None:
        start = time.perf_counter()
        answer = await champion.submit({"x": [i]}, 1, None, scorer)
        done[answer[0]["by"]].append(time.perf_counter() - start)

    async def scenario() -> float:
        # a lone rider first (scored inline on the event loop before lanes existed) ...
        lone = asyncio.ensure_future(one(-1, challenger))
        await asyncio.sleep(0.05)
        ticks = 0
        start = time.perf_counter()
        tasks = [one(i, challenger if i % 5 == 0 else None) for i in range(40)]
        waves = asyncio.gather(*tasks)
        while not waves.done():  # ... the loop keeps turning while the challenger works
            await asyncio.sleep(0.01)
            ticks += 1
        await waves
        await lone
        return ticks / (time.perf_counter() - start)

    rate = asyncio.run(scenario())
    assert len(done["champion"]) == 32 and len(done["challenger"]) == 9
    assert max(done["champion"]) < 0.3  # never behind a 0.4 s challenger call
    assert min(done["challenger"]) >= 0.39
    assert rate > 20  # the event loop ran ~100 ticks a second, not 2-3
    assert threads == {"relevo-rider-lane"}  # never on the event loop's thread


def test_a_rider_past_its_deadline_gets_a_timeout_and_a_hung_lane_takes_no_more(monkeypatch):
    import threading

    from relevo.serving import batching
    from relevo.serving.batching import RiderTimeout

    release, started = threading.Event(), threading.Event()
    calls: list[tuple[str, int]] = []
    champion = MicroBatcher(_tagged_runner("champion", calls), max_rows=64)

    def hang(columns, n):
        calls.append(("challenger", n))
        started.set()
        release.wait(5)  # a model that hangs
        return [{"by": "challenger", "echo": x} for x in columns["x"]]

    challenger = MicroBatcher(hang, max_rows=64)
    hooked: list[list] = []
    champion.on_scored = hooked.append
    monkeypatch.setattr(batching, "RIDER_DEADLINE_S", 0.2)

    async def scenario():
        # the rider's deadline leaves its lane time to start the call even on a busy machine
        # (a lane that starts after it would rightly not call the model at all)
        first = await asyncio.gather(
            champion.submit({"x": [1]}, 1, "late", challenger, deadline_s=1.0),
            champion.submit({"x": [2]}, 1, "own"),
            return_exceptions=True,
        )
        assert await asyncio.to_thread(started.wait, 5), "the lane never called the model"
        await asyncio.sleep(0.1)  # the lane's call has now hung for over 0.2 s
        second = await asyncio.gather(
            champion.submit({"x": [3]}, 1, "refused", challenger, deadline_s=5),
            return_exceptions=True,
        )
        release.set()
        await asyncio.sleep(0.2)  # the hung call returns now: its output is dropped
        return first, second

    (late, own), (refused,) = asyncio.run(scenario())
    assert isinstance(late, RiderTimeout) and "1 s" in str(late)
    assert own == [{"by": "champion", "echo": 2}]
    assert isinstance(refused, RiderTimeout) and "last call" in str(refused)
    assert calls.count(("challenger", 1)) == 1  # the refused rider was never scored
    # only the champion's caller was logged: the late rider's output was dropped
    assert [tag for batch in hooked for tag, _ in batch] == ["own"]


def test_a_quick_riders_rows_are_scored_in_the_hosts_call_and_a_slowed_one_moves_to_its_lane():
    """A challenger as quick as its champion scores its riders in the champion's call (one
    thread, one log hook call for both): no hand-over to pay. Once its calls get slow, its
    riders go to its own lane, and the champion's callers stop waiting for it."""
    import threading
    import time

    state = {"seconds": 0.0}
    threads: list[tuple[str, str]] = []

    def runner(name: str):
        def run(columns, n):
            threads.append((name, threading.current_thread().name))
            if name == "challenger" and state["seconds"]:
                time.sleep(state["seconds"])
            return [{"by": name, "echo": x} for x in columns["x"]]

        return run

    champion = MicroBatcher(runner("champion"), max_rows=64)
    challenger = MicroBatcher(runner("challenger"), max_rows=64)
    hooked: list[list] = []
    champion.on_scored = hooked.append

    async def batch(first: int) -> list:
        return await asyncio.gather(
            *[
                champion.submit({"x": [i]}, 1, f"t{i}", challenger if i % 4 == 0 else None)
                for i in range(first, first + 4)  # too few to hold the rider back
            ]
        )

    async def scenario():
        await batch(0)  # the challenger's first call: in its lane, its speed unknown
        threads.clear()
        hooked.clear()
        quick = await batch(8)
        quick_threads, quick_hooks = list(threads), list(hooked)
        state["seconds"] = 0.2
        await batch(16)  # scored in the host's call, slowly: the last ride
        threads.clear()
        start = time.perf_counter()
        own = await champion.submit({"x": [99]}, 1)
        rider = asyncio.ensure_future(champion.submit({"x": [98]}, 1, None, challenger))
        await asyncio.sleep(0)
        more = await asyncio.gather(*[champion.submit({"x": [i]}, 1) for i in range(24, 28)])
        waited = time.perf_counter() - start
        await rider
        return quick, quick_threads, quick_hooks, own, more, waited, list(threads)

    quick, quick_threads, quick_hooks, own, more, waited, slow_threads = asyncio.run(scenario())
    assert [a[0]["by"] for a in quick] == ["challenger", *["champion"] * 3]
    # both models scored in one worker thread, and logged with one hook call
    assert len({t for _, t in quick_threads}) == 1
    assert [len(batch) for batch in quick_hooks] == [4]
    assert own == [{"by": "champion", "echo": 99}] and len(more) == 4
    assert waited < 0.15  # the champion's callers did not wait for the 0.2 s call
    assert ("challenger", "relevo-rider-lane") in slow_threads


def _stateful_runner(name, calls, state=None):
    def run(columns, n):
        calls.append((name, n))
        if state and state.get("seconds"):
            time.sleep(state["seconds"])
        return [{"by": name, "echo": x} for x in columns["x"]]

    return run


def test_a_lone_rider_that_hangs_never_freezes_the_event_loop_and_times_out():
    calls: list = []
    state = {"seconds": 0.0}
    champion = MicroBatcher(_stateful_runner("champion", calls), max_rows=64)
    challenger = MicroBatcher(_stateful_runner("challenger", calls, state), max_rows=64)

    async def scenario():
        await champion.submit({"x": [0]}, 1)  # the champion's speed is known
        await champion.submit({"x": [1]}, 1, None, challenger)  # first rider: its lane
        assert challenger._quick_beside(champion)  # as quick as the champion: rides inline
        state["seconds"] = 1.0  # the challenger now hangs (1 s stands for "forever")
        ticks: list[float] = []

        async def ticker():
            while True:
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.01)

        tick = asyncio.ensure_future(ticker())
        await asyncio.sleep(0.05)
        start = time.perf_counter()
        try:  # a lone request at low load, with the predictor's kind of deadline
            out = await champion.submit({"x": [2]}, 1, "t", challenger, deadline_s=0.2)
        except RiderTimeout:
            out = "timeout"
        waited = time.perf_counter() - start
        await asyncio.sleep(0.05)  # a few ticks after
        tick.cancel()
        gap = max(b - a for a, b in itertools.pairwise(ticks))
        return out, waited, gap

    out, waited, gap = asyncio.run(scenario())
    assert gap < 0.3, f"the event loop was frozen {gap:.2f} s by the challenger's call"
    assert out == "timeout", f"got the challenger's answer after {waited:.2f} s (deadline 0.2 s)"


def test_a_lane_call_respects_max_rows():
    calls: list = []
    champion = MicroBatcher(_stateful_runner("champion", calls), max_rows=8)
    challenger = MicroBatcher(_stateful_runner("challenger", calls, {"seconds": 0.2}), max_rows=8)

    async def scenario():
        tasks = []
        for _wave in range(6):
            for i in range(8):
                scorer = challenger if i % 2 else None
                tasks.append(asyncio.ensure_future(champion.submit({"x": [i]}, 1, None, scorer)))
            await asyncio.sleep(0.03)
        return await asyncio.gather(*tasks)

    asyncio.run(scenario())
    sizes = [n for name, n in calls if name == "challenger"]
    assert max(sizes) <= 8, f"challenger calls of {sizes} rows with max_rows=8"


def test_one_bulk_champion_request_does_not_make_a_slow_challenger_ride_again():
    """The champion's calls cost per row (a bulk request of 10,000 rows: 0.5 s); the challenger
    takes 0.1 s a call. A bulk request does not count in the champion's moving average of its
    batches' calls, so the small batches after it still do not wait for the challenger."""
    calls: list = []

    def champion_run(columns, n):
        calls.append(("champion", n))
        time.sleep(0.00005 * n)  # 1 row: 0.05 ms, 10,000 rows: 0.5 s
        return [{"by": "champion", "echo": x} for x in columns["x"]]

    champion = MicroBatcher(champion_run, max_rows=64)
    challenger = MicroBatcher(_stateful_runner("challenger", calls, {"seconds": 0.1}), max_rows=64)

    async def batch() -> float:
        start = time.perf_counter()
        tasks = [
            asyncio.ensure_future(
                champion.submit({"x": [i]}, 1, None, challenger if i == 0 else None)
            )
            for i in range(3)
        ]
        own = tasks[1:]
        await asyncio.gather(*own)
        waited = time.perf_counter() - start
        await asyncio.gather(*tasks)
        return waited

    async def scenario():
        before = await batch()  # the challenger is slow: its lane; the champion's rows quick
        await champion.submit({"x": list(range(10_000))}, 10_000)  # one bulk request
        after = await batch()
        return before, after

    before, after = asyncio.run(scenario())
    assert before < 0.05
    assert after < 0.05, f"the champion's callers waited {after:.2f} s for the 0.1 s challenger"


def test_a_quick_rider_that_hangs_in_the_hosts_call_holds_neither_its_batch_nor_the_next(
    monkeypatch,
):
    """A challenger as quick as the champion rides in the champion's call; when such a call
    hangs, the champion's callers of that batch were held until it returned, and so was every
    later batch (the batcher stayed busy). Past the riders' deadline the champion's callers
    are answered (logged once), later batches are scored in another thread, and new riders for
    the hung model are refused at once."""
    import threading

    from relevo.serving import batching

    monkeypatch.setattr(batching, "RIDER_DEADLINE_S", 0.2)
    release = threading.Event()
    state = {"hang": False}
    calls: list = []

    def challenger_run(columns, n):
        calls.append(("challenger", n))
        if state["hang"]:
            release.wait(5)  # a model that hangs (5 s stands for "forever")
        return [{"by": "challenger", "echo": x} for x in columns["x"]]

    champion = MicroBatcher(_stateful_runner("champion", calls), max_rows=64)
    challenger = MicroBatcher(challenger_run, max_rows=64)
    hooked: list[list] = []
    champion.on_scored = hooked.append

    async def timed(coro):
        start = time.perf_counter()
        try:
            out = await coro
        except RiderTimeout as exc:
            out = exc
        return out, time.perf_counter() - start

    async def scenario():
        await champion.submit({"x": [0]}, 1)  # the champion's speed is known
        await champion.submit({"x": [1]}, 1, None, challenger)  # first rider: its lane
        assert challenger._quick_beside(champion)
        state["hang"] = True
        hooked.clear()
        first = await asyncio.gather(
            *[timed(champion.submit({"x": [i]}, 1, f"own{i}")) for i in range(10, 13)],
            timed(champion.submit({"x": [20]}, 1, "rider", challenger, deadline_s=0.2)),
        )
        later = await asyncio.gather(
            *[timed(champion.submit({"x": [i]}, 1, f"later{i}")) for i in range(30, 34)]
        )
        refused = await timed(champion.submit({"x": [40]}, 1, "refused", challenger, 5.0))
        release.set()
        await asyncio.sleep(0.3)  # the hung call returns now: its output is dropped
        return first, later, refused

    first, later, refused = asyncio.run(scenario())
    own, (rider, _) = first[:3], first[3]  # too few to hold the rider back: it rides
    assert [out for out, _ in own] == [[{"by": "champion", "echo": i}] for i in range(10, 13)]
    assert max(waited for _, waited in own) < 1.5, own  # not the hung call's 5 s
    assert isinstance(rider, RiderTimeout)
    assert [out for out, _ in later] == [[{"by": "champion", "echo": i}] for i in range(30, 34)]
    assert max(waited for _, waited in later) < 1.5, later
    assert isinstance(refused[0], RiderTimeout) and refused[1] < 0.1
    assert calls.count(("challenger", 1)) == 2  # the priming lane call and the hung one
    tags = [tag for batch in hooked for tag, _ in batch]
    assert sorted(tags) == sorted(
        [f"own{i}" for i in range(10, 13)] + [f"later{i}" for i in range(30, 34)]
    )
