"""Model versions and their profiles in the store."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import Engine, RowMapping
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from relevo.errors import ConflictError
from relevo.registry.signature import Signature
from relevo.registry.types import MAX_VERSION, ModelVersion
from relevo.store.rows import from_row
from relevo.store.tables import model_versions, profiles

#: PostgreSQL: one new version of a name at a time (see deployments.py for relevo's lock keys)
_NAME_LOCK = text("SELECT pg_advisory_xact_lock(7461628, hashtext(:name))")

#: SQLite: writers that lose the race for a version number try again this many times, backing
#: off a little (randomly, so they do not collide again in step)
_ATTEMPTS = 30
_BACKOFF_S = 0.002
_MAX_BACKOFF_S = 0.05


def _to_version(row: RowMapping) -> ModelVersion:
    return from_row(ModelVersion, row, signature=Signature.from_dict(row["signature"]))


class ModelRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, fields: dict[str, Any], reference_profile: str) -> ModelVersion:
        """Insert the next version of `fields['name']` and its reference profile, atomically."""
        name = fields["name"]
        for attempt in range(_ATTEMPTS):
            now = datetime.now(UTC)
            try:
                with self.engine.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        # two readers of max(version) would both pick the same next number
                        conn.execute(_NAME_LOCK, {"name": name})
                    latest = conn.execute(
                        select(func.max(model_versions.c.version)).where(
                            model_versions.c.name == name
                        )
                    ).scalar()
                    version = (latest or 0) + 1
                    row = {**fields, "version": version, "created_at": now}
                    conn.execute(insert(model_versions).values(**row))
                    conn.execute(
                        insert(profiles).values(
                            model_name=name,
                            model_version=version,
                            kind="reference",
                            payload=reference_profile,
                            created_at=now,
                        )
                    )
            except SAIntegrityError:
                # another writer took this version number first; take the next
                time.sleep(random.uniform(0, min(_MAX_BACKOFF_S, _BACKOFF_S * 2**attempt)))
                continue
            return self.get(name, version)  # type: ignore[return-value]
        raise ConflictError(f"could not allocate a new version of {name!r}: too many writers")

    def insert(self, fields: dict[str, Any], reference_profile: str) -> bool:
        """Insert version `fields['version']` of `fields['name']` as given (an imported
        version keeps its number); False, and nothing written, when that version exists."""
        now = datetime.now(UTC)
        row = {"created_at": now, **fields}
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(model_versions).values(**row))
                conn.execute(
                    insert(profiles).values(
                        model_name=row["name"],
                        model_version=row["version"],
                        kind="reference",
                        payload=reference_profile,
                        created_at=now,
                    )
                )
        except SAIntegrityError:
            return False
        return True

    def get(self, name: str, version: int | None = None) -> ModelVersion | None:
        if "\x00" in name or (version is not None and not 1 <= version <= MAX_VERSION):
            # no row can match, and the database would fail on the value itself (PostgreSQL:
            # a version past its 32-bit column, a NUL in text; SQLite: one past 64 bits)
            return None
        query = select(model_versions).where(model_versions.c.name == name)
        if version is None:
            query = query.order_by(model_versions.c.version.desc()).limit(1)
        else:
            query = query.where(model_versions.c.version == version)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return _to_version(row) if row is not None else None

    def list(self, name: str | None = None) -> list[ModelVersion]:
        query = select(model_versions).order_by(model_versions.c.name, model_versions.c.version)
        if name is not None:
            query = query.where(model_versions.c.name == name)
        with self.engine.connect() as conn:
            return [_to_version(r) for r in conn.execute(query).mappings()]

    def profile(self, name: str, version: int, kind: str = "reference") -> str | None:
        query = select(profiles.c.payload).where(
            profiles.c.model_name == name,
            profiles.c.model_version == version,
            profiles.c.kind == kind,
        )
        with self.engine.connect() as conn:
            return conn.execute(query).scalar()
