"""A server whose spool disk fills while it runs: predictions are refused (503, nothing is
answered unlogged), the replica leaves the balancer (readiness 503) until a write works again,
the failed writes are counted, and the log says it now and then rather than a traceback per
batch."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from relevo.datasets import CHURN_FEATURES, make_churn
from relevo.errors import UnavailableError
from relevo.serving import log as log_module
from relevo.serving import spool as spool_module

FULL = {"on": False}


def _rows(n: int, seed: int) -> list[dict]:
    frame = make_churn(n, seed=seed)[["customer_id", *CHURN_FEATURES]]
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def _errors(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name == "relevo_prediction_log_write_errors":
            return sum(s.value for s in family.samples if s.name.endswith("_total"))
    return 0.0


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    real = spool_module.Spool.append_many

    def append_many(self: spool_module.Spool, payloads: list[bytes]) -> int:
        if FULL["on"]:
            raise UnavailableError(
                f"cannot write the prediction log's spool {self.folder}: No space left on device"
            )
        return real(self, payloads)

    monkeypatch.setattr(spool_module.Spool, "append_many", append_many)
    monkeypatch.setattr(log_module, "SPOOL_UNREADY_S", 1.0)
    FULL["on"] = False
    yield FULL
    FULL["on"] = False


def test_a_full_spool_disk_refuses_predictions_and_takes_the_replica_out_until_it_has_room(
    live_server, full_disk, caplog
):
    caplog.set_level(logging.WARNING, logger="relevo")
    url = live_server.url
    predict = f"{url}/v1/deployments/churn/predict"
    assert httpx.post(predict, json={"instances": _rows(2, seed=1)}).status_code == 200
    before = _errors(url)

    full_disk["on"] = True
    # concurrent requests: micro-batches of several, each refused
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda i: httpx.post(predict, json={"instances": _rows(1, seed=10 + i)}),
                range(40),
            )
        )
    assert {a.status_code for a in answers} == {503}, {a.status_code for a in answers}
    # the caller reads that the service is unavailable, the server log why (by request id)
    body = answers[0].json()
    assert body["error"] == "service unavailable" and body["request_id"]
    assert any(
        body["request_id"] in r.getMessage() and "No space left" in r.getMessage()
        for r in caplog.records
    )
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 503
    assert any("spool" in p for p in ready.json()["problems"]), ready.json()
    assert _errors(url) >= before + 1
    tracebacks = [r for r in caplog.records if r.exc_info and "on_scored" in r.getMessage()]
    assert tracebacks == []
    said = [r for r in caplog.records if "were not queued" in r.getMessage()]
    assert len(said) <= 1

    full_disk["on"] = False
    time.sleep(1.2)  # SPOOL_UNREADY_S: readiness lets traffic try again
    assert httpx.get(f"{url}/readyz").status_code == 200
    assert httpx.post(predict, json={"instances": _rows(2, seed=2)}).status_code == 200
