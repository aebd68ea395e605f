"""`Relevo`: one handle on a relevo home and store, shared by the CLI, the server and notebooks."""

from __future__ import annotations

import contextlib
from pathlib import Path

from relevo.private import private_dir
from relevo.registry.artifacts import open_artifact_store
from relevo.registry.registry import Registry
from relevo.routing.service import DeploymentService
from relevo.settings import Settings, get_settings
from relevo.store import Store


class Relevo:
    """The store, the registry and the deployments of one relevo home.

    >>> rv = Relevo(home="/tmp/relevo-doc")            # doctest: +SKIP
    >>> rv.registry.register("churn", pipeline, reference=train, target="churned")  # doctest: +SKIP
    """

    def __init__(
        self,
        home: str | Path | None = None,
        database_url: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        base = settings or get_settings()
        updates: dict[str, object] = {}
        if home is not None:
            updates["home"] = Path(home).expanduser()
        if database_url is not None:
            updates["database_url"] = database_url
        self.settings = base.model_copy(update=updates) if updates else base
        # the home holds models, the log's spool and dead letters: private to the user (0700)
        # (a home that cannot be made is reported by whatever needs it first)
        with contextlib.suppress(OSError):
            private_dir(self.settings.home)
        # the default SQLite file lives in the home, made on first use; an explicit URL is
        # taken as given (a wrong folder is an error, not a new empty store)
        self.store = Store(
            self.settings.resolved_database_url,
            create_folder=self.settings.database_url is None,
        )
        self.registry = Registry(self.store, open_artifact_store(self.settings))
        self.deployments = DeploymentService(self.store, self.registry)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Relevo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
