"""Running and checking alembic migrations from code (CLI, start-up, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url:
        config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


class SchemaMismatch(RuntimeError):
    """The database is not at the revision this code was written for."""


def ensure_current(engine: Engine) -> None:
    """Refuse to serve on an unmigrated database or one migrated by newer code."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    known = {rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if current is None:
        raise SchemaMismatch("the database is not migrated: run `creditshare db upgrade`")
    if current not in known:
        raise SchemaMismatch(
            f"the database is at revision {current}, unknown to this code (newer?): refusing to serve"
        )
    raise SchemaMismatch(
        f"the database is at {current}, code expects {head}: run `creditshare db upgrade`"
    )
