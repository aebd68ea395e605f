"""Leases: one holder at a time across handles on one database, until the lease lapses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from relevo.store import Store

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_two_handles_take_turns_on_a_lease(store: Store, database_url: str):
    other = Store(database_url)
    try:
        assert store.leases.acquire("evaluator", "a", 30, now=T0)
        assert not other.leases.acquire("evaluator", "b", 30, now=T0 + timedelta(seconds=1))
        assert other.leases.get("evaluator", now=T0 + timedelta(seconds=1)).holder == "a"

        # a renews before the lease lapses: b still cannot take it after the first expiry
        assert store.leases.renew("evaluator", "a", 30, now=T0 + timedelta(seconds=20))
        assert not other.leases.acquire("evaluator", "b", 30, now=T0 + timedelta(seconds=40))

        # a stops renewing: once it lapses, b takes over and a's renewal fails
        later = T0 + timedelta(seconds=51)
        assert store.leases.get("evaluator", now=later) is None
        assert other.leases.acquire("evaluator", "b", 30, now=later)
        assert not store.leases.renew("evaluator", "a", 30, now=later)
        lease = store.leases.get("evaluator", now=later)
        assert (lease.holder, lease.acquired_at, lease.expires_at) == (
            "b",
            later,
            later + timedelta(seconds=30),
        )

        # release frees it at once, only by its holder
        assert not store.leases.release("evaluator", "a")
        assert other.leases.release("evaluator", "b")
        assert store.leases.acquire("evaluator", "a", 30, now=later)
    finally:
        other.close()


def test_a_renewal_through_acquire_keeps_the_first_acquisition_time(store: Store):
    assert store.leases.acquire("evaluator", "a", 30, now=T0)
    assert store.leases.acquire("evaluator", "a", 30, now=T0 + timedelta(seconds=10))
    lease = store.leases.get("evaluator", now=T0 + timedelta(seconds=10))
    assert lease.acquired_at == T0
    assert lease.expires_at == T0 + timedelta(seconds=40)
    # leases of other names are independent
    assert store.leases.acquire("other", "b", 30, now=T0)


def test_concurrent_acquirers_get_one_winner(store: Store, concurrently):
    won = concurrently(8, lambda own, i: own.leases.acquire("evaluator", f"r{i}", 30, now=T0))
    assert sum(won) == 1
    assert store.leases.get("evaluator", now=T0).holder == f"r{won.index(True)}"


def test_concurrent_takeovers_of_a_lapsed_lease_get_one_winner(store: Store, concurrently):
    assert store.leases.acquire("evaluator", "old", 30, now=T0)
    later = T0 + timedelta(seconds=31)
    won = concurrently(8, lambda own, i: own.leases.acquire("evaluator", f"r{i}", 30, now=later))
    assert sum(won) == 1
    assert store.leases.get("evaluator", now=later).holder == f"r{won.index(True)}"
