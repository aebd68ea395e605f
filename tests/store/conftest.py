"""Fixtures for the storage layer's own tests: a migrated store, and a way to run the same
write from many threads at once, each on its own engine (as separate processes would)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from relevo.store import Store


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A fresh, migrated store."""
    handle = Store(database_url)
    try:
        yield handle
    finally:
        handle.close()


Concurrently = Callable[[int, Callable[[Store, int], Any]], list[Any]]


@pytest.fixture
def concurrently(database_url: str) -> Concurrently:
    """`concurrently(n, work)` runs `work(store, i)` in n threads released together, each with
    a Store of its own; returns the n results in order and re-raises the first error."""

    def run(n: int, work: Callable[[Store, int], Any]) -> list[Any]:
        stores = [Store(database_url) for _ in range(n)]
        start = threading.Barrier(n)
        results: list[Any] = [None] * n
        errors: list[BaseException] = []

        def target(i: int) -> None:
            try:
                start.wait(timeout=30)
                results[i] = work(stores[i], i)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(n)]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
            assert not any(t.is_alive() for t in threads), "a writer hung"
        finally:
            for s in stores:
                s.close()
        if errors:
            raise errors[0]
        return results

    return run
