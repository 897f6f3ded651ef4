"""Test infrastructure shared by the whole suite.

The database is SQLite by default and PostgreSQL when
``CREDITSHARE_TEST_DATABASE_URL`` is set; Redis is used when
``CREDITSHARE_TEST_REDIS_URL`` is set. Each xdist worker gets its own database
(migrated with alembic, never ``create_all``) and its own Redis db number.
Tests share their worker's database and create uniquely named data through the
factories, so no test depends on an empty table.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from service.app import create_app
from service.settings import Settings
from tests.fixtures.databases import (
    drop_postgres,
    provision_database,
    provision_redis,
    using_postgres,
)
from tests.fixtures.factories import Factory

MASTER_KEY = "test-master-key-0123456789abcdefghijklmnopqrstuvwxyz"


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "gw0")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = provision_database(_worker(), tmp_path_factory.mktemp("db"), "main")
    yield url
    if using_postgres():
        drop_postgres(url)


@pytest.fixture
def scratch_database(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """``make(label, migrate=True)``: a database of the test's own (``provision_database``),
    dropped when the test ends (PostgreSQL; a SQLite file goes with ``tmp_path``)."""
    made: list[str] = []

    def make(label: str, *, migrate: bool = True) -> str:
        url = provision_database(_worker(), tmp_path, label, migrate=migrate)
        made.append(url)
        return url

    yield make
    if using_postgres():
        for url in made:
            drop_postgres(url)


@pytest.fixture(scope="session")
def redis_url() -> str | None:
    return provision_redis(_worker())


@pytest.fixture(scope="session")
def settings(
    database_url: str, redis_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return make_settings(database_url, redis_url, tmp_path_factory.mktemp("data"))


def make_settings(
    database_url: str, redis_url: str | None, data_dir: Path, **overrides: object
) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "public_url": "http://testserver",
        "master_key": MASTER_KEY,
        "data_dir": data_dir,
        "token_requests_per_second_per_address": 10_000.0,
        "token_burst_per_address": 100_000,
        "token_failures_burst_per_address": 100_000,
        "audit_seal_interval": 0.2,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def app_client(settings: Settings) -> Iterator[TestClient]:
    """One running app per worker (lifespan started once)."""
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def client(app_client: TestClient) -> TestClient:
    app_client.headers.clear()
    return app_client


@pytest.fixture
def db(app_client: TestClient) -> Iterator[Session]:
    """A session on the app's database; whatever the test leaves uncommitted is rolled back."""
    factory = app_client.app.state.sessionmaker  # type: ignore[attr-defined]
    with factory() as session:
        yield session
        session.rollback()


@pytest.fixture
def factory(app_client: TestClient) -> Factory:
    return Factory(app_client)
