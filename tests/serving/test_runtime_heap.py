"""A server in its own process freezes the loaded heap; one inside another program does not."""

from __future__ import annotations

import gc

import pytest

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
