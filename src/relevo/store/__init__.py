"""The storage layer: the only part of relevo that speaks SQL.

`Store(url)` connects, migrates the schema on first use and exposes one repository per concern.
"""

from __future__ import annotations

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

    @property
    def display_url(self) -> str:
        return safe_url(self.url)

    def ping(self) -> None:
        """Raise UnavailableError unless the database answers."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise UnavailableError(f"the database at {self.display_url} does not answer") from exc

    def close(self) -> None:
        self.engine.dispose()


__all__ = ["Store"]
