"""Alembic environment: migrates the database named by the settings (or by the
connection handed over in ``config.attributes['connection']``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import service.models  # noqa: F401  (registers every table)
from service.db.base import Base
from service.db.engine import make_engine
from service.settings import load_settings

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    url = config.attributes.get("url") or load_settings().effective_database_url
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `creditshare db upgrade`")
run_migrations_online()
