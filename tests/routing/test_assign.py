"""Canary assignment and shadow mirroring: shares, stickiness, the same split in every process,
monotone weights, and a reshuffle for a new challenger."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from relevo.routing.assign import assign, buckets, mirror
from relevo.routing.deployment import Deployment

KEYS = [f"customer-{i}" for i in range(10_000)]


def canary(weight: float = 0.1, challenger: str = "churn-gbm", version: int = 1) -> Deployment:
    return Deployment(
        "churn",
        "churn",
        3,
        datetime(2026, 11, 30, tzinfo=UTC),
        strategy="canary",
        challenger_name=challenger,
        challenger_version=version,
        weight=weight,
        key_column="customer_id",
    )


@pytest.mark.parametrize("weight", [0.05, 0.1, 0.25, 0.5])
def test_keyed_share_is_within_one_point_of_the_weight(weight):
    routed = assign(canary(weight), KEYS, len(KEYS))
    assert routed.dtype == np.int8
    assert set(np.unique(routed)) <= {0, 1}
    assert abs(routed.mean() - weight) <= 0.01


def test_keyed_share_is_a_binomial_draw_around_the_weight():
    """docs/deployments.md: over 10,000 keys the share falls in the binomial's 99.9 % interval
    (scipy's, not relevo's), for any deployment; one point is two standard deviations at 0.5."""
    weights = (0.001, 0.05, 0.5, 0.999)
    counts = {w: [] for w in weights}
    for j in range(50):  # 50 deployments: 50 independent sets of buckets for the same keys
        state = replace(canary(), name=f"deployment-{j}")
        for w in weights:
            counts[w].append(int(assign(replace(state, weight=w), KEYS, len(KEYS)).sum()))
    n = len(KEYS)
    for w, seen in counts.items():
        low, high = binom.ppf(0.0005, n, w), binom.isf(0.0005, n, w)
        assert all(low <= x <= high for x in seen), (w, seen, low, high)
        assert len(set(seen)) > 10  # each deployment draws its own buckets
    # the standard deviation of the shares is the binomial's: sqrt(w (1 - w) / n)
    shares = np.array(counts[0.5]) / n
    assert 0.5 * 0.005 < shares.std(ddof=1) < 1.5 * 0.005


def test_the_same_key_goes_to_the_same_model_every_time():
    state = canary(0.3)
    first = assign(state, KEYS, len(KEYS))
    # the same keys again, shuffled and in smaller batches: each key keeps its model
    order = np.random.default_rng(7).permutation(len(KEYS))
    shuffled = [KEYS[i] for i in order]
    again = np.concatenate(
        [
            assign(state, shuffled[i : i + 64], len(shuffled[i : i + 64]))
            for i in range(0, 10_000, 64)
        ]
    )
    assert np.array_equal(again, first[order])


def test_a_key_sent_alone_goes_where_it_goes_in_a_batch():
    """One-row requests take a shorter path (one hash, no arrays): it must agree exactly."""
    state = canary(0.3)
    keys = [*KEYS[:3_000], 42, 42.0, "42", True, -7, 3.5]
    batch = assign(state, keys, len(keys))
    alone = np.array([assign(state, [k], 1)[0] for k in keys])
    assert np.array_equal(alone, batch)
    assert assign(state, [42], 1)[0] == assign(state, ["42"], 1)[0]  # a number routes as its text


def test_another_process_assigns_every_key_alike(tmp_path):
    """Python's str hash is salted per process; the assignment must not be."""
    state = canary(0.2)
    here = assign(state, KEYS, len(KEYS))
    script = tmp_path / "assign.py"
    script.write_text(
        "import json, sys\n"
        "from datetime import UTC, datetime\n"
        "from relevo.routing.assign import assign\n"
        "from relevo.routing.deployment import Deployment\n"
        "state = Deployment('churn', 'churn', 3, datetime(2026, 11, 30, tzinfo=UTC),\n"
        "    strategy='canary', challenger_name='churn-gbm', challenger_version=1, weight=0.2)\n"
        "keys = [f'customer-{i}' for i in range(10_000)]\n"
        "print(json.dumps(assign(state, keys, len(keys)).tolist()))\n"
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
        )
        assert np.array_equal(np.array(json.loads(out.stdout)), here)


def test_raising_the_weight_only_moves_keys_to_the_challenger():
    before = assign(canary(0.05), KEYS, len(KEYS))
    for weight in (0.25, 0.5, 1.0):
        after = assign(canary(weight), KEYS, len(KEYS))
        assert not np.any((before == 1) & (after == 0)), "a key went back to the champion"
        assert after.sum() > before.sum()
        before = after
    assert before.all()


def test_a_new_challenger_reshuffles_the_keys():
    first = assign(canary(0.5, version=1), KEYS, len(KEYS))
    second = assign(canary(0.5, version=2), KEYS, len(KEYS))
    other = assign(canary(0.5, challenger="churn-tree"), KEYS, len(KEYS))
    # independent draws agree on about half the keys, identical ones on all of them
    assert 0.45 < (first == second).mean() < 0.55
    assert 0.45 < (first == other).mean() < 0.55


def test_keys_of_any_type_route_by_their_text():
    state = canary(0.5)
    ints = assign(state, list(range(1000)), 1000)
    assert np.array_equal(assign(state, [str(i) for i in range(1000)], 1000), ints)
    assert np.array_equal(assign(state, [float(i) for i in range(1000)], 1000), ints)
    assert np.array_equal(assign(state, np.arange(1000), 1000), ints)


def test_rows_without_a_key_are_split_at_random():
    state = canary(0.2)
    rng = np.random.default_rng(1)
    unkeyed = assign(state, None, 20_000, rng)
    assert abs(unkeyed.mean() - 0.2) < 0.01
    # missing keys in a keyed request: random for those rows, sticky for the others
    keys = [None if i % 2 else k for i, k in enumerate(KEYS)] + [float("nan"), pd.NA] * 5_000
    mixed = assign(state, keys, len(keys), np.random.default_rng(2))
    keyed = assign(state, KEYS[::2], 5000)
    assert np.array_equal(mixed[: len(KEYS) : 2], keyed)
    assert abs(mixed[len(KEYS) :].mean() - 0.2) < 0.015
    assert not np.isnan(buckets("s", keys)[:1]).any()
    assert np.isnan(buckets("s", keys)[1])
    # one-row requests (a shorter path) without a key, or with a missing one: at random too
    for one in (None, [None], [float("nan")], [pd.NA]):
        alone = [assign(state, one, 1, rng)[0] for _ in range(20_000)]
        assert abs(np.mean(alone) - 0.2) < 0.01


def test_only_a_canary_sends_rows_to_the_challenger():
    base = canary(0.5)
    for state in (
        replace(base, strategy="basic", challenger_name=None, challenger_version=None),
        replace(base, strategy="shadow"),
    ):
        assert not assign(state, KEYS, len(KEYS)).any()
        assert not assign(state, None, 100).any()


def test_a_shadow_mirrors_its_share_of_rows_and_the_champion_answers_all():
    shadow = replace(canary(), strategy="shadow", weight=0.0, mirror=0.2)
    mirrored = mirror(shadow, KEYS, len(KEYS))
    assert mirrored.dtype == bool
    assert abs(mirrored.mean() - 0.2) <= 0.01
    assert np.array_equal(mirror(shadow, KEYS, len(KEYS)), mirrored)  # sticky by key
    assert mirror(replace(shadow, mirror=1.0), KEYS, len(KEYS)).all()
    assert not assign(shadow, KEYS, len(KEYS)).any()
    assert not mirror(canary(), KEYS, len(KEYS)).any()


def test_a_key_count_that_does_not_match_the_rows_is_refused():
    with pytest.raises(ValueError, match="3 keys for 4 rows"):
        assign(canary(), ["a", "b", "c"], 4)
