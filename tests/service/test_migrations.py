"""The migrations build exactly the schema the models declare (tables, columns, indexes),
on the suite's database (SQLite, or PostgreSQL in CI): a model changed without its
migration fails here, not on a production upgrade."""

from __future__ import annotations

from typing import cast

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import Engine

import service.models  # noqa: F401  (registers every table on the metadata)
from service.db.base import Base


def test_migrated_schema_matches_the_models(app_client: TestClient) -> None:
    engine = cast(Engine, app_client.app.state.engine)  # type: ignore[attr-defined]
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
