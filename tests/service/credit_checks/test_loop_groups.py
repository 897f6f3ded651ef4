"""Single checks on PostgreSQL, issued on the event loop (``single_service._LoopGroups``):
a stale cache is reloaded on a thread, never on the loop; a shut-down app leaves no
connection behind; an app served again, on a new event loop, issues on that loop; a
request on another loop than the serving one is issued on the worker thread, binding
nothing to that loop."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from service.app import create_app
from service.credit_checks import single_service
from service.credit_checks.single_service import single_checks
from service.policy import cache as policy_cache_module
from service.policy.cache import policy_cache
from tests.conftest import make_settings
from tests.fixtures.databases import using_postgres
from tests.fixtures.factories import Factory

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not using_postgres(), reason="the loop's groups are PostgreSQL's"),
]


def _check(http: TestClient, factory: Factory, headers: dict[str, str]) -> int:
    body = {"uscc": factory.merchant(), "purpose": "ONBOARDING"}
    return http.post("/v1/credit-checks", json=body, headers=headers).status_code


def test_a_stale_cache_is_reloaded_on_a_thread_not_on_the_loop(
    app_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory = Factory(app_client)
    headers = factory.headers("credit:check")
    assert _check(app_client, factory, headers) == 201
    threads: dict[str, list[threading.Thread]] = {"reload": [], "issue": []}
    read_version = policy_cache_module.repository.current_version
    make_issuers = single_service.issuers

    def recorded_read(session: Any) -> Any:
        threads["reload"].append(threading.current_thread())
        return read_version(session)

    def recorded_issuers(state: Any) -> Any:
        threads["issue"].append(threading.current_thread())
        return make_issuers(state)

    monkeypatch.setattr(policy_cache_module.repository, "current_version", recorded_read)
    monkeypatch.setattr(single_service, "issuers", recorded_issuers)
    policy_cache(app_client.app.state).invalidate()  # type: ignore[attr-defined]

    assert _check(app_client, factory, headers) == 201
    assert threads["reload"]
    assert threads["issue"]
    loop_thread = threads["issue"][0]
    assert all(thread is not loop_thread for thread in threads["reload"])


def test_a_check_on_another_event_loop_binds_nothing_to_it(
    scratch_database: Any, redis_url: str | None, tmp_path: Path
) -> None:
    """The first check of a fresh app comes from a client on a loop of its own (as
    schemathesis drives the app): answered alike, issued on the worker thread; nothing is
    bound to that loop (the groups and the limiter's client are the serving loop's), so
    nothing is left open when it ends."""
    app = create_app(make_settings(scratch_database("other-loop"), redis_url, tmp_path / "d"))
    with TestClient(app, raise_server_exceptions=False) as http:
        factory = Factory(http)
        headers = factory.headers("credit:check")
        body = {"uscc": factory.merchant(), "purpose": "ONBOARDING"}

        async def elsewhere() -> int:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                response = await c.post("/v1/credit-checks", json=body, headers=headers)
            return response.status_code

        assert asyncio.run(elsewhere()) == 201
        assert single_checks(app.state)._on_loop is None
        primary = getattr(app.state.limiter, "_primary", None)
        assert getattr(primary, "_async_client", None) is None
        assert _check(http, factory, headers) == 201  # the serving loop's own groups
        groups = single_checks(app.state)._on_loop
        assert groups is not None
        assert groups.loop is app.state.serving_loop


def _backends(url: str) -> int:
    database = make_url(url).database
    admin = make_url(url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def _backends_gone(url: str, timeout: float = 10.0) -> bool:
    """Whether every backend of ``url`` has ended (a closed connection's backend exits a
    moment after its client has gone)."""
    deadline = time.monotonic() + timeout
    while _backends(url):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_an_app_served_twice_issues_on_each_loop_and_leaves_no_connection(
    scratch_database: Any, redis_url: str | None, tmp_path: Path
) -> None:
    url = scratch_database("loop-groups")
    app = create_app(make_settings(url, redis_url, tmp_path / "data"))
    loops = []
    for _ in range(2):
        with TestClient(app, raise_server_exceptions=False) as http:
            factory = Factory(http)
            headers = factory.headers("credit:check")
            assert [_check(http, factory, headers) for _ in range(3)] == [201] * 3
            groups = single_checks(app.state)._on_loop
            assert groups is not None
            loops.append(groups.loop)
        assert _backends_gone(url)
    assert loops[0] is not loops[1]
