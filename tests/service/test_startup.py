"""Start-up refuses to serve on an unmigrated database or one migrated by newer code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from service.app import create_app
from service.db.engine import make_engine
from service.db.migrate import SchemaMismatch
from tests.conftest import make_settings
from tests.fixtures.databases import drop_postgres, provision_database, using_postgres


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "gw0")


def test_refuses_unmigrated_database(tmp_path: Path) -> None:
    url = provision_database(_worker(), tmp_path, "unmigrated", migrate=False)
    try:
        app = create_app(make_settings(url, None, tmp_path))
        with pytest.raises(SchemaMismatch, match="not migrated"), TestClient(app):
            pass
    finally:
        if using_postgres():
            drop_postgres(url)


def test_refuses_database_from_newer_code(tmp_path: Path) -> None:
    url = provision_database(_worker(), tmp_path, "newer")
    try:
        engine = make_engine(url, pool_size=1)
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
        engine.dispose()
        app = create_app(make_settings(url, None, tmp_path))
        with pytest.raises(SchemaMismatch, match="unknown to this code"), TestClient(app):
            pass
    finally:
        if using_postgres():
            drop_postgres(url)
