"""Alembic environment: runs on the connection relevo hands over (see relevo.store.engine)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from relevo.store.tables import metadata

config = context.config
connection = config.attributes.get("connection")

if connection is not None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:  # `alembic` run by hand with sqlalchemy.url set in the ini
    engine = engine_from_config(
        config.get_section(config.config_ini_section) or {}, poolclass=pool.NullPool
    )
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
