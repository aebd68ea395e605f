"""The basic strategy under load, over real HTTP: `relevo deploy churn churn:2` swaps the live
version while clients keep sending predictions, and not one request fails."""

from __future__ import annotations

import threading
import time

import httpx
from sklearn.base import clone

from relevo.datasets import CHURN_FEATURES, CHURN_TARGET, make_churn

CLIENTS = 6


def _rows(n: int, seed: int) -> list[dict]:
    frame = make_churn(n, seed=seed)[["customer_id", *CHURN_FEATURES]]
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def test_a_basic_swap_under_concurrent_load_fails_no_request(
    rv, live_server, deployed, churn_pipeline, churn_frame, cli
):
    other = clone(churn_pipeline).set_params(model__C=0.01)
    other.fit(churn_frame[CHURN_FEATURES], churn_frame[CHURN_TARGET])
    second = rv.registry.register("churn", other, churn_frame, target="churned")
    assert second.ref == "churn:2"

    url = f"{live_server.url}/v1/deployments/churn/predict"
    stop = threading.Event()
    lock = threading.Lock()
    failures: list[str] = []
    answered: list[str] = []  # the model of every answered row, in arrival order

    def client(seed: int) -> None:
        rows = _rows(40, seed)
        with httpx.Client(timeout=30) as http:
            i = 0
            while not stop.is_set():
                batch = rows[i % 40 : i % 40 + 1 + i % 3]
                i += 1
                try:
                    response = http.post(url, json={"instances": batch})
                except httpx.HTTPError as exc:
                    with lock:
                        failures.append(f"transport: {exc!r}")
                    continue
                with lock:
                    if response.status_code != 200:
                        failures.append(f"{response.status_code}: {response.text[:200]}")
                        continue
                    predictions = response.json()["predictions"]
                    if len(predictions) != len(batch):
                        failures.append(f"{len(batch)} rows sent, {len(predictions)} answered")
                    answered.extend(p["model"] for p in predictions)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        # traffic first, on churn:1
        deadline = time.monotonic() + 60
        while "churn:1" not in list(answered):
            assert time.monotonic() < deadline and not failures, failures[:3]
            time.sleep(0.02)

        result = cli("deploy", "churn", "churn:2")
        assert result.exit_code == 0, result.output

        # answers from churn:2 appear (the server polls the store), the clients never stop
        deadline = time.monotonic() + 60
        while "churn:2" not in list(answered):
            assert time.monotonic() < deadline, "churn:2 never answered after the swap"
            time.sleep(0.02)
        seen = len(answered)
        while len(answered) < seen + 50 * CLIENTS and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)

    assert not failures, failures[:5]
    models = set(answered)
    assert models == {"churn:1", "churn:2"}
    assert rv.deployments.get("churn").model_ref == "churn:2"
    final = httpx.post(url, json={"instances": _rows(3, 99)}, timeout=30).json()
    assert {p["model"] for p in final["predictions"]} == {"churn:2"}
