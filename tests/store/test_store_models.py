"""Version numbers under concurrent registrations of one name: unique, gap-free, no errors."""

from __future__ import annotations

from typing import Any

from relevo.store import Store


def fields(name: str = "churn") -> dict[str, Any]:
    return {
        "name": name,
        "flavor": "sklearn",
        "task": "binary",
        "classes": [0, 1],
        "artifact_sha256": "0" * 64,
        "artifact_path": "ab/abcd",
        "artifact_size": 1,
        "signature": {"columns": []},
        "target": None,
        "description": "",
        "tags": {},
        "metrics": {},
        "lineage": {},
        "library_versions": {},
        "flavor_options": {},
    }


def test_versions_count_up_per_name(store):
    added = [store.models.add(fields(name), "{}") for name in ("churn", "churn", "churn-eu")]
    assert [(v.name, v.version) for v in added] == [("churn", 1), ("churn", 2), ("churn-eu", 1)]
    assert added[0].created_at.tzinfo is not None
    assert store.models.profile("churn", 2) == "{}"


def test_concurrent_registrations_of_one_name_get_unique_gap_free_versions(store, concurrently):
    writers, each = 12, 4

    def work(own: Store, i: int) -> list[int]:
        return [own.models.add(fields(), f'{{"writer": {i}}}').version for _ in range(each)]

    versions = [v for result in concurrently(writers, work) for v in result]

    assert sorted(versions) == list(range(1, writers * each + 1))
    stored = store.models.list("churn")
    assert [v.version for v in stored] == list(range(1, writers * each + 1))
    # every version has the reference profile its own writer stored
    assert all(store.models.profile("churn", v.version) is not None for v in stored)
