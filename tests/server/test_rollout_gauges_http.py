"""Rollout state on /metrics over real HTTP: a running server picks up a canary's weight (and a
shadow's mirror share) from the store, and a rollback brings the challenger's share to 0."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sklearn.base import clone

from relevo.datasets import CHURN_FEATURES, CHURN_TARGET

WEIGHT = "relevo_deployment_challenger_weight"
MIRROR = "relevo_deployment_shadow_mirror"


def _samples(url: str, name: str) -> dict[tuple[str, str, str], float]:
    """The samples of gauge `name` on /metrics, by (deployment, champion, challenger)."""
    answer = httpx.get(f"{url}/metrics", timeout=10)
    assert answer.status_code == 200
    return {
        (s.labels["deployment"], s.labels["champion"], s.labels["challenger"]): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
        if s.name == name
    }


def _wait_for(url: str, name: str, key: tuple[str, str, str], value: float) -> dict:
    """Poll /metrics (the server notices store changes every poll interval) until the sample
    `key` of gauge `name` reads `value`, up to 10 s; returns the last samples read."""
    deadline = time.monotonic() + 10.0
    samples = _samples(url, name)
    while samples.get(key) != value and time.monotonic() < deadline:
        time.sleep(0.1)
        samples = _samples(url, name)
    return samples


def _challenger(rv, churn_pipeline, churn_frame):
    other = clone(churn_pipeline).set_params(model__C=0.01)
    other.fit(churn_frame[CHURN_FEATURES], churn_frame[CHURN_TARGET])
    return rv.registry.register("churn-small", other, churn_frame, target="churned")


def test_a_canary_weight_reaches_metrics_and_a_rollback_brings_it_to_zero(
    rv, deployed, churn_pipeline, churn_frame, server_settings, spawn_server
):
    url = spawn_server(server_settings)
    alone = ("churn", deployed.ref, "")
    assert _wait_for(url, WEIGHT, alone, 0.0).get(alone) == 0.0

    challenger = _challenger(rv, churn_pipeline, churn_frame)
    rv.deployments.deploy("churn", challenger.ref, weight=0.25, actor="test")
    canary = ("churn", deployed.ref, challenger.ref)
    samples = _wait_for(url, WEIGHT, canary, 0.25)
    assert samples.get(canary) == 0.25
    assert _samples(url, MIRROR).get(canary) == 0.0  # a canary mirrors nothing

    rv.deployments.rollback("churn", actor="test")
    samples = _wait_for(url, WEIGHT, canary, 0.0)
    assert samples.get(canary) == 0.0  # the withdrawn challenger no longer answers
    assert samples.get(alone) == 0.0


def test_a_shadow_reports_its_mirror_share_and_no_canary_weight(
    rv, deployed, churn_pipeline, churn_frame, server_settings, spawn_server
):
    challenger = _challenger(rv, churn_pipeline, churn_frame)
    rv.deployments.deploy("churn", challenger.ref, mirror=0.5, actor="test")
    url = spawn_server(server_settings)
    shadow = ("churn", deployed.ref, challenger.ref)
    assert _wait_for(url, MIRROR, shadow, 0.5).get(shadow) == 0.5
    assert _samples(url, WEIGHT).get(shadow) == 0.0
