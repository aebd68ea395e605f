"""Challengers that fail on purpose, for the rollout tests: picklable scikit-learn-style
estimators wrapping a fitted model.

They answer normally until `ARMED` is set (registration rehearses a model, which must work),
then `Flaky` raises on every other call, `Broken` on every call and `Slow` takes 0.3 s a call.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import numpy as np

#: failing starts when a test sets ARMED["on"] = True (after registering the model)
ARMED = {"on": False}


class Flaky:
    """Delegates to `inner`, raising on every other call once armed."""

    def __init__(self, inner: Any, every: int = 2) -> None:
        self.inner = inner
        self.every = every
        self.classes_ = inner.classes_
        self.feature_names_in_ = getattr(inner, "feature_names_in_", None)
        self.n_features_in_ = getattr(inner, "n_features_in_", None)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_calls")}

    def fit(self, x: Any, y: Any) -> Flaky:
        self.inner.fit(x, y)
        return self

    def _fail_now(self) -> bool:
        if not ARMED["on"]:
            return False
        calls = self.__dict__.get("_calls")
        if calls is None:  # first call after loading
            with _LOCK:
                calls = self.__dict__.setdefault("_calls", itertools.count())
        return next(calls) % self.every == 0

    def predict(self, x: Any) -> Any:
        if self._fail_now():
            raise RuntimeError("flaky challenger: failing on purpose")
        return self.inner.predict(x)

    def predict_proba(self, x: Any) -> Any:
        if self._fail_now():
            raise RuntimeError("flaky challenger: failing on purpose")
        return self.inner.predict_proba(x)


class Scribbler(Flaky):
    """Answers like `inner`, then, once armed, writes over the array it was handed: a model
    whose steps work in place (`copy=False`)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner, every=1)

    def predict_proba(self, x: Any) -> Any:
        out = self.inner.predict_proba(x)
        if ARMED["on"] and isinstance(x, np.ndarray) and x.flags.writeable:
            x[...] = -1.0
        return out


class Broken(Flaky):
    """Raises on every call once armed."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner, every=1)


class Slow(Flaky):
    """Answers like `inner`, taking 0.3 s a call once armed: a heavier model."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner, every=1)

    def predict_proba(self, x: Any) -> Any:
        if ARMED["on"]:
            time.sleep(0.3)
        return self.inner.predict_proba(x)


_LOCK = threading.Lock()
