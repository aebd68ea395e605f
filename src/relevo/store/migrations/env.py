"""Alembic environment: runs on the connection relevo hands over (see relevo.store.engine)."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from sqlalchemy import engine_from_config, pool

from relevo.store.tables import UTCDateTime, metadata

config = context.config
connection = config.attributes.get("connection")


def render_item(kind: str, obj: Any, _autogen_context: Any) -> str | Literal[False]:
    """Autogenerate writes UTCDateTime columns as the plain type they store, so migrations
    keep importing nothing from relevo."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


options: dict[str, Any] = {
    "target_metadata": metadata,
    "render_as_batch": True,
    "render_item": render_item,
}

if connection is not None:
    context.configure(connection=connection, **options)
    with context.begin_transaction():
        context.run_migrations()
else:  # `alembic` run by hand with sqlalchemy.url set in the ini
    engine = engine_from_config(
        config.get_section(config.config_ini_section) or {}, poolclass=pool.NullPool
    )
    with engine.connect() as conn:
        context.configure(connection=conn, **options)
        with context.begin_transaction():
            context.run_migrations()
