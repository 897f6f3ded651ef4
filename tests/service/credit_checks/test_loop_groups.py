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
from typing import Any, cast

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from service.app import create_app
from service.credit_checks import single as single_module
from service.credit_checks.single import CheckRequest
from service.credit_checks.single_service import SingleChecks, single_checks
from service.policy import cache as policy_cache_module
from service.policy.cache import policy_cache
from service.problems import ProblemError
from service.usage import plans as plans_module
from service.usage.plans import rate_plans
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


def test_stale_caches_are_read_on_a_thread_never_on_the_loop(
    scratch_database: Any, redis_url: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The policy and the rate plans go stale, and the group's read outlasts the plans'
    time to live: every database read of the caches happens on a thread, none on the loop
    (a plan expiring during the read is not read again there)."""
    app = create_app(make_settings(scratch_database("stale"), redis_url, tmp_path / "d"))
    with TestClient(app, raise_server_exceptions=False) as http:
        factory = Factory(http)
        headers = factory.headers("credit:check")
        assert _check(http, factory, headers) == 201
        reads: list[threading.Thread] = []
        loop_threads: list[threading.Thread] = []
        read_version = policy_cache_module.repository.current_version
        read_plan = plans_module.repository.get_plan
        load = single_module.repository.load_subjects_async

        def recorded_version(session: Any) -> Any:
            reads.append(threading.current_thread())
            return read_version(session)

        def recorded_plan(session: Any, name: str) -> Any:
            reads.append(threading.current_thread())
            return read_plan(session, name)

        async def slow_load(*args: Any, **kwargs: Any) -> Any:
            loop_threads.append(threading.current_thread())
            subjects = await load(*args, **kwargs)
            await asyncio.sleep(0.15)  # longer than the plans' time to live
            return subjects

        monkeypatch.setattr(policy_cache_module.repository, "current_version", recorded_version)
        monkeypatch.setattr(plans_module.repository, "get_plan", recorded_plan)
        monkeypatch.setattr(single_module.repository, "load_subjects_async", slow_load)
        plans = rate_plans(app.state)
        monkeypatch.setattr(plans, "_ttl", 0.1)
        plans.invalidate()
        policy_cache(app.state).invalidate()

        assert _check(http, factory, headers) == 201
        assert loop_threads
        assert reads
        assert all(thread is not loop_threads[0] for thread in reads)


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


def test_a_check_after_the_service_stopped_is_503_not_500(app_client: TestClient) -> None:
    """Shutting down (the coalescer stopped, the loop's connections closed): a request
    still arriving gets ``503 service-unavailable``, never an unhandled error."""
    service = SingleChecks(app_client.app.state)  # type: ignore[attr-defined]
    service.stop()

    async def submit() -> None:
        await service.submit(cast(CheckRequest, object()))

    with pytest.raises(ProblemError) as refused:
        asyncio.run(submit())
    assert refused.value.slug == "service-unavailable"
    assert refused.value.status == 503
