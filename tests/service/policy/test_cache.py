"""The in-process policy cache: fresh for a second, recompiled only on a new version."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from service.db.base import utcnow
from service.db.engine import make_engine
from service.db.session import make_sessionmaker
from service.models import VerdictPolicy
from service.policy.cache import PolicyCache
from tests.fixtures.databases import drop_postgres, provision_database, using_postgres
from tests.service.credit_checks.support import domain_default


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def private_db(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """A database of its own: this test appends policies nobody else should see."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    url = provision_database(worker, tmp_path, "policycache")
    engine = make_engine(url, pool_size=2)
    try:
        yield make_sessionmaker(engine)
    finally:
        engine.dispose()
        if using_postgres():
            drop_postgres(url)


def _append(factory: sessionmaker[Session], version: int, court_minor: str) -> None:
    rules = domain_default()
    rules["matrix"]["COURT_CASE"]["MINOR"] = court_minor
    with factory() as session, session.begin():
        session.add(
            VerdictPolicy(version=version, rules=rules, created_at=utcnow(), created_by="t")
        )


def test_cached_for_the_ttl_then_reread(private_db: sessionmaker[Session]) -> None:
    clock = Clock()
    cache = PolicyCache(private_db, ttl=1.0, clock=clock)
    first = cache.current()
    assert first.version == 1
    assert cache.current() is first
    _append(private_db, 2, "CLEAR")  # another node's PUT
    clock.now += 0.5
    assert cache.current() is first
    clock.now += 0.6
    second = cache.current()
    assert second.version == 2
    assert second.rules.cells[("COURT_CASE", "MINOR")] == 0
    clock.now += 5
    assert cache.current() is second  # same version: not recompiled


def test_invalidate_rereads_at_once(private_db: sessionmaker[Session]) -> None:
    clock = Clock()
    cache = PolicyCache(private_db, ttl=60.0, clock=clock)
    assert cache.current().version == 1
    _append(private_db, 2, "RESTRICTED")
    assert cache.current().version == 1
    cache.invalidate()
    assert cache.current().version == 2
