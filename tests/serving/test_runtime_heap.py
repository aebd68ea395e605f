"""A server in its own process freezes the loaded heap; one inside another program does not; a
model that failed to load is tried again."""

from __future__ import annotations

import gc

import pytest
from sklearn.base import clone

from relevo.datasets import CHURN_FEATURES
from relevo.serving.runtime import Runtime


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_own_process_runtime_freezes_the_loaded_heap(rv, churn_pipeline, churn_frame, unfrozen):
    version = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", version.ref)
    guest = Runtime(rv)
    assert guest.refresh()
    assert gc.get_freeze_count() == 0
    owner = Runtime(rv, freeze_heap=True)
    assert owner.refresh()
    assert gc.get_freeze_count() > 0
    assert "churn" in owner.endpoints


def test_a_retried_load_that_fails_again_changes_nothing(rv, churn_pipeline, churn_frame):
    version = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", version.ref)
    with rv.registry.artifacts.path(version.artifact_path).open("ab") as fh:
        fh.write(b"\0")
    runtime = Runtime(rv)
    assert runtime.refresh()  # the first look
    assert "churn" in runtime.failures
    runtime.pool._retry_at = 0.0  # the retry is due
    assert not runtime.refresh()  # tried again, failed again: nothing served changed
    assert "churn" in runtime.failures


def test_a_challenger_that_failed_to_load_is_tried_again(rv, churn_pipeline, churn_frame):
    rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    other = clone(churn_pipeline).set_params(model__C=0.01)
    other.fit(churn_frame[CHURN_FEATURES], churn_frame["churned"])
    rv.registry.register("churn", other, churn_frame, target="churned")  # an artifact of its own
    rv.deployments.deploy("churn", "churn:1")
    rv.deployments.deploy("churn", "churn:2", weight=0.5)
    artifact = rv.registry.artifacts.path(rv.registry.get("churn:2").artifact_path)
    whole = artifact.read_bytes()
    artifact.write_bytes(whole + b"\0")  # a moment's damage (a disk, a half-synced copy)
    runtime = Runtime(rv)
    assert runtime.refresh()
    assert [r.ref for r in runtime.endpoints["churn"].runners] == ["churn:1"]  # champion alone
    runtime.pool._retry_at = 0.0
    assert not runtime.refresh()  # still damaged: nothing served changed
    artifact.write_bytes(whole)
    runtime.pool._retry_at = 0.0
    assert runtime.refresh()
    assert [r.ref for r in runtime.endpoints["churn"].runners] == ["churn:1", "churn:2"]
    assert not runtime.pool.challenger_failures
