"""The storage layer: the only part of relevo that speaks SQL.

`Store(url)` connects, migrates the schema on first use and exposes one repository per concern.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from relevo.errors import UnavailableError
from relevo.store.alerts import AlertRepository
from relevo.store.arms import ArmRepository
from relevo.store.deployments import DeploymentRepository
from relevo.store.engine import create_store_engine, safe_url
from relevo.store.engine import migrate as migrate_store
from relevo.store.labels import LabelRepository
from relevo.store.leases import LeaseRepository
from relevo.store.models import ModelRepository
from relevo.store.predictions import PredictionRepository
from relevo.store.profiles import ProfileRepository
from relevo.store.shadows import ShadowRepository

#: how long `Store.ping` waits for the database's answer: a readiness probe gives up after a
#: few seconds (Kubernetes' timeoutSeconds), and should see a 503, not a timeout
PING_WAIT_S = 2.0


class Store:
    """A migrated database with its repositories."""

    def __init__(self, url: str, create_folder: bool = False, migrate: bool = True) -> None:
        self.url = url
        self.engine = create_store_engine(url, create_folder=create_folder)
        if migrate:  # (False: a helper process of a server that has migrated it)
            migrate_store(self.engine)
        self.models = ModelRepository(self.engine)
        self.deployments = DeploymentRepository(self.engine)
        self.predictions = PredictionRepository(self.engine)
        self.leases = LeaseRepository(self.engine)
        self.arms = ArmRepository(self.engine)
        self.shadows = ShadowRepository(self.engine)
        self.profiles = ProfileRepository(self.engine)
        self.alerts = AlertRepository(self.engine)
        self.labels = LabelRepository(self.engine)
        self._ping_lock = threading.Lock()
        self._pinging: Future[SQLAlchemyError | None] | None = None

    @property
    def display_url(self) -> str:
        return safe_url(self.url)

    def ping(self, wait_s: float = PING_WAIT_S) -> None:
        """Raise UnavailableError unless the database answers within `wait_s` seconds.

        One ping at a time: a caller while one is out waits for its answer. A database that
        hangs (a network partition) then holds one thread, not one per readiness probe."""
        with self._ping_lock:
            pinging = self._pinging
            if pinging is None or pinging.done():
                pinging = self._pinging = Future()
                threading.Thread(
                    target=self._ask, args=(pinging,), name="relevo-store-ping", daemon=True
                ).start()
        try:
            failure = pinging.result(timeout=wait_s)
        except FutureTimeout:
            raise UnavailableError(
                f"the database at {self.display_url} does not answer within {wait_s:g} s"
            ) from None
        if failure is not None:
            raise UnavailableError(
                f"the database at {self.display_url} does not answer"
            ) from failure

    def _ask(self, answer: Future[SQLAlchemyError | None]) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            answer.set_result(exc)
        except BaseException as exc:  # a bug: the callers raise it
            answer.set_exception(exc)
        else:
            answer.set_result(None)

    def close(self) -> None:
        self.engine.dispose()


__all__ = ["PING_WAIT_S", "Store"]
