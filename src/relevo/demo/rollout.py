"""What the demo's replacement chapters share: their deployment, traffic that counts which model
answered, waiting for the server to follow a change, and a challenger that breaks in production.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
import numpy as np

from relevo.datasets import CHURN_FEATURES, CHURN_ID, make_churn
from relevo.errors import UnavailableError

#: a deployment of its own, so the earlier chapters' numbers (rows logged, export) stay theirs
ROLLOUT = "churn-rollout"

#: the broken challenger fails once the demo says it is in production (registration rehearses
#: every model, and that must work)
IN_PRODUCTION = {"on": False}


class FailsInProduction:
    """A challenger whose every call fails in production (as when a dependency it needs is
    missing there): it wraps a working model and raises once `IN_PRODUCTION` is set."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.classes_ = inner.classes_
        self.feature_names_in_ = inner.feature_names_in_  # its inputs are the wrapped model's

    def fit(self, x: Any, y: Any) -> FailsInProduction:
        self.inner.fit(x, y)
        return self

    def predict(self, x: Any) -> Any:
        self._check()
        return self.inner.predict(x)

    def predict_proba(self, x: Any) -> Any:
        self._check()
        return self.inner.predict_proba(x)

    def _check(self) -> None:
        if IN_PRODUCTION["on"]:
            # planted by the demo (a library the serving machine lacks), and said to be so
            raise RuntimeError(
                "planted by relevo demo: libgomp.so.1: cannot open shared object file"
            )


class Traffic:
    """Customers sent to a deployment in batches; counts answers per model and failures."""

    def __init__(self, url: str, seed: int, start_id: int, deployment: str = ROLLOUT) -> None:
        self.url = url
        self.deployment = deployment
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.next_id = start_id
        self.client = httpx.Client(timeout=60)
        self.models: Counter[str] = Counter()
        self.failed = 0
        self.requests = 0

    def close(self) -> None:
        self.client.close()

    def send(self, rows: int) -> Counter[str]:
        """One request of `rows` new customers; which model answered how many."""
        frame = make_churn(rows, seed=int(self.rng.integers(1 << 31)))
        frame[CHURN_ID] = [f"C{i:07d}" for i in range(self.next_id, self.next_id + rows)]
        self.next_id += rows
        frame = frame[[CHURN_ID, *CHURN_FEATURES]]
        records = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
        answer = self.client.post(
            f"{self.url}/v1/deployments/{self.deployment}/predict", json={"instances": records}
        )
        self.requests += 1
        got: Counter[str] = Counter()
        if answer.status_code != 200:
            self.failed += 1
            return got
        got.update(p["model"] for p in answer.json()["predictions"])
        self.models.update(got)
        return got


def wait_serving(
    url: str,
    refs: list[str],
    timeout_s: float = 30.0,
    deployment: str = ROLLOUT,
    revision: int | None = None,
) -> None:
    """Until the server serves exactly `refs` (champion first) for the deployment, routing
    by `revision` of it or a later one when given (a canary after a shadow of the same two
    models serves the same refs)."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=10) as client:
        while True:
            found = client.get(f"{url}/v1/deployments/{deployment}/status")
            if found.status_code == 200 and found.json()["serving"] == refs:
                applied = found.json().get("serving_revision") or 0
                if revision is None or applied >= revision:
                    return
            if time.monotonic() > deadline:
                raise UnavailableError(f"the server did not switch {deployment!r} to {refs}")
            time.sleep(0.05)
