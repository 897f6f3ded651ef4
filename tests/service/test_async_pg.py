"""``service.db.async_pg`` on the suite's PostgreSQL database: the event loop's autocommit
connections commit each statement at once, are reused while healthy and younger than
``max_age``, are never reused after a driver error (raised as SQLAlchemy's
``DBAPIError``, which the app answers ``503``), are limited to ``size`` at once, and are
closed by ``close()``; an unreachable server fails the checkout promptly. And at the app
level: the single checks' loop connections killed under a running app cost clean 503s,
never a 500, and the checks recover without a restart."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError

from service.db.async_pg import AsyncConnections, execute, fetch_all
from tests.fixtures.databases import using_postgres
from tests.fixtures.factories import Factory

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not using_postgres(), reason="the loop's connections are PostgreSQL's"),
]

T = TypeVar("T")
TIMEOUT = 10.0
"""Seconds any one test's asynchronous part may take: a hang fails instead."""


def run(coroutine: Coroutine[Any, Any, T], timeout: float = TIMEOUT) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, timeout)

    return asyncio.run(bounded())


@pytest.fixture
def url(database_url: str) -> URL:
    return make_url(database_url)


@pytest.fixture
def observer(url: URL) -> Iterator[psycopg.Connection[Any]]:
    """An independent connection to the same database, for looking and terminating."""
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        yield connection


@pytest.fixture
def table(observer: psycopg.Connection[Any]) -> Iterator[str]:
    """A scratch table of the test's own (dropped afterwards)."""
    name = f"async_pg_{uuid.uuid4().hex[:12]}"
    observer.execute(f"CREATE TABLE {name} (id text PRIMARY KEY, note text)")
    yield name
    observer.execute(f"DROP TABLE IF EXISTS {name}")


@asynccontextmanager
async def connections(url: URL, size: int = 1, **kwargs: Any) -> AsyncIterator[AsyncConnections]:
    pool = AsyncConnections(url, size, **kwargs)
    try:
        yield pool
    finally:
        await pool.close()


async def backend_pid(connection: psycopg.AsyncConnection[Any]) -> int:
    rows = await fetch_all(connection, "SELECT pg_backend_pid()", None)
    return int(rows[0][0])


def is_alive(observer: psycopg.Connection[Any], pid: int) -> bool:
    found = observer.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return found is not None


def wait_gone(observer: psycopg.Connection[Any], pids: set[int], timeout: float = 5.0) -> None:
    """Until none of these backends is left (a backend exits shortly after its client
    closed or it was terminated)."""
    deadline = time.monotonic() + timeout
    while any(is_alive(observer, pid) for pid in pids):
        assert time.monotonic() < deadline, f"backends {pids} still there"
        time.sleep(0.02)


def terminate(observer: psycopg.Connection[Any], pids: set[int]) -> None:
    for pid in pids:
        observer.execute("SELECT pg_terminate_backend(%s)", (pid,))
    wait_gone(observer, pids)


# ---- statements ----------------------------------------------------------------------------


def test_a_write_through_execute_is_committed_at_once(
    url: URL, observer: psycopg.Connection[Any], table: str
) -> None:
    row_id = uuid.uuid4().hex

    async def scenario() -> bool:
        async with connections(url) as pool, pool.connection() as connection:
            await execute(connection, f"INSERT INTO {table} (id) VALUES (%s)", (row_id,))
            # Still inside the block, no commit asked for: another connection sees it.
            found = observer.execute(f"SELECT id FROM {table} WHERE id = %s", (row_id,))
            return found.fetchone() is not None

    assert run(scenario())


def test_fetch_all_returns_the_rows(
    url: URL, observer: psycopg.Connection[Any], table: str
) -> None:
    observer.execute(f"INSERT INTO {table} (id, note) VALUES ('a', 'one'), ('b', 'two')")

    async def scenario() -> list[tuple[Any, ...]]:
        async with connections(url) as pool, pool.connection() as connection:
            return await fetch_all(
                connection,
                f"SELECT id, note FROM {table} WHERE id = ANY(%s) ORDER BY id",
                (["a", "b"],),
            )

    assert run(scenario()) == [("a", "one"), ("b", "two")]


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        pytest.param("SELEC 1", ProgrammingError, id="syntax-error"),
        pytest.param(
            "INSERT INTO {table} (id) VALUES ('same')", IntegrityError, id="unique-violation"
        ),
    ],
)
def test_a_driver_error_is_raised_as_dbapierror_and_its_connection_is_not_reused(
    url: URL,
    observer: psycopg.Connection[Any],
    table: str,
    statement: str,
    expected: type[DBAPIError],
) -> None:
    observer.execute(f"INSERT INTO {table} (id) VALUES ('same')")
    sql = statement.format(table=table)

    used: list[tuple[int, psycopg.AsyncConnection[Any]]] = []

    async def failing(pool: AsyncConnections) -> None:
        async with pool.connection() as connection:
            used.append((await backend_pid(connection), connection))
            await execute(connection, sql, None)

    async def scenario() -> int:
        async with connections(url) as pool:
            with pytest.raises(DBAPIError) as raised:
                await failing(pool)
            assert isinstance(raised.value, expected)
            assert isinstance(raised.value.orig, psycopg.Error)
            assert raised.value.statement == sql
            assert not raised.value.connection_invalidated  # the connection itself was fine
            async with pool.connection() as next_one:
                return await backend_pid(next_one)

    next_pid = run(scenario())
    [(failed, connection)] = used
    assert connection.closed
    assert next_pid != failed
    wait_gone(observer, {failed})


def test_fetch_all_raises_a_driver_error_as_dbapierror(url: URL) -> None:
    async def scenario() -> None:
        async with connections(url) as pool, pool.connection() as connection:
            await fetch_all(connection, "SELECT * FROM no_such_table_here", None)

    with pytest.raises(ProgrammingError) as raised:
        run(scenario())
    assert isinstance(raised.value.orig, psycopg.errors.UndefinedTable)


def test_a_terminated_backend_fails_its_next_statement_and_the_next_checkout_is_fresh(
    url: URL, observer: psycopg.Connection[Any]
) -> None:
    async def scenario() -> tuple[int, int]:
        async with connections(url) as pool:
            async with pool.connection() as connection:
                first = await backend_pid(connection)
            terminate(observer, {first})  # while the connection is idle in the pool
            with pytest.raises(DBAPIError) as raised:
                async with pool.connection() as connection:
                    await backend_pid(connection)
            assert isinstance(raised.value, OperationalError)
            assert raised.value.connection_invalidated
            assert connection.closed
            async with pool.connection() as connection:
                return first, await backend_pid(connection)

    first, second = run(scenario())
    assert second != first


def test_after_a_restart_one_failure_closes_every_idle_connection(
    url: URL, observer: psycopg.Connection[Any]
) -> None:
    """Three idle connections whose backends are gone (a server restart): the first group
    to find one broken fails, and the next one works on a fresh connection instead of
    failing on the next dead one (as the engine's pool invalidates itself)."""

    async def hold(pool: AsyncConnections, ready: asyncio.Event, pids: list[int]) -> None:
        async with pool.connection() as connection:
            pids.append(await backend_pid(connection))
            if len(pids) == 3:
                ready.set()
            await ready.wait()

    async def scenario() -> tuple[list[int], list[str]]:
        async with connections(url, size=3) as pool:
            ready, pids = asyncio.Event(), []
            await asyncio.gather(*(hold(pool, ready, pids) for _ in range(3)))
            terminate(observer, set(pids))
            outcomes = []
            for _ in range(3):
                try:
                    async with pool.connection() as connection:
                        await backend_pid(connection)
                    outcomes.append("ok")
                except DBAPIError:
                    outcomes.append("failed")
            return pids, outcomes

    pids, outcomes = run(scenario())
    assert len(set(pids)) == 3
    assert outcomes == ["failed", "ok", "ok"]


def test_a_broken_connection_is_not_kept_even_if_its_block_swallowed_the_error(
    url: URL, observer: psycopg.Connection[Any]
) -> None:
    async def scenario() -> tuple[int, int, psycopg.AsyncConnection[Any]]:
        async with connections(url) as pool:
            async with pool.connection() as connection:
                first = await backend_pid(connection)
                terminate(observer, {first})
                with pytest.raises(OperationalError):
                    await backend_pid(connection)
            async with pool.connection() as fresh:
                return first, await backend_pid(fresh), connection

    first, second, broken = run(scenario())
    assert broken.broken
    assert second != first


# ---- time limits ---------------------------------------------------------------------------


def test_a_statement_running_past_statement_timeout_is_cancelled_by_the_server(
    url: URL,
) -> None:
    async def scenario() -> tuple[int, int]:
        async with connections(url, statement_timeout=0.2) as pool:
            async with pool.connection() as connection:
                first = await backend_pid(connection)
            with pytest.raises(OperationalError):  # QueryCanceled, as SQLAlchemy's error
                async with pool.connection() as connection:
                    await fetch_all(connection, "SELECT pg_sleep(30)", None)
            async with pool.connection() as connection:
                return first, await backend_pid(connection)

    first, after = run(scenario())
    assert after != first  # the connection of the cancelled statement was not reused


def test_the_servers_statement_timeout_is_set_on_every_connection(url: URL) -> None:
    async def scenario() -> str:
        async with connections(url, statement_timeout=1.5) as pool, pool.connection() as c:
            rows = await fetch_all(c, "SHOW statement_timeout", None)
            return str(rows[0][0])

    assert run(scenario()) == "1500ms"


def test_a_block_holding_its_connection_past_the_deadline_fails_with_dbapierror(
    url: URL, observer: psycopg.Connection[Any]
) -> None:
    """A server that stops answering (here: a statement the server no longer limits)
    costs the block its deadline, statement_timeout + grace, then a driver error."""

    pids: list[int] = []

    async def sleep_unbounded(pool: AsyncConnections) -> None:
        async with pool.connection() as connection:
            pids.append(await backend_pid(connection))
            await execute(connection, "SET statement_timeout = 0", None)
            await fetch_all(connection, "SELECT pg_sleep(30)", None)

    async def scenario() -> int:
        async with connections(url, statement_timeout=0.3, grace=0.3) as pool:
            with pytest.raises(OperationalError) as raised:
                await sleep_unbounded(pool)
            assert raised.value.connection_invalidated
            async with pool.connection() as connection:
                return await backend_pid(connection)

    after = run(scenario())
    (pid,) = pids
    assert after != pid  # never handed out again
    observer.execute("SELECT pg_cancel_backend(%s)", (pid,))  # its sleep, left to the server


def test_a_timeout_error_of_the_block_itself_is_not_taken_for_the_deadline(url: URL) -> None:
    async def scenario() -> None:
        async with connections(url) as pool, pool.connection():
            raise TimeoutError("the block's own")

    with pytest.raises(TimeoutError, match="the block's own"):
        run(scenario())


def test_statement_timeout_and_grace_must_be_positive(url: URL) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        AsyncConnections(url, 1, statement_timeout=0)
    with pytest.raises(ValueError, match="must be > 0"):
        AsyncConnections(url, 1, grace=0)


# ---- checkouts -----------------------------------------------------------------------------


def test_with_size_one_a_second_checkout_waits_until_the_first_block_exits(url: URL) -> None:
    async def scenario() -> tuple[list[str], int, int]:
        events: list[str] = []
        first_in, release, second_in = asyncio.Event(), asyncio.Event(), asyncio.Event()
        pids: dict[str, int] = {}

        async def hold(name: str, entered: asyncio.Event, until: asyncio.Event | None) -> None:
            async with pool.connection() as connection:
                events.append(f"{name} in")
                pids[name] = await backend_pid(connection)
                entered.set()
                if until is not None:
                    await until.wait()
                events.append(f"{name} out")

        async with connections(url, size=1) as pool:
            first = asyncio.create_task(hold("first", first_in, release))
            await first_in.wait()
            second = asyncio.create_task(hold("second", second_in, None))
            await asyncio.sleep(0.2)  # time enough to get in, were it let in
            assert not second_in.is_set()
            assert events == ["first in"]
            release.set()
            await asyncio.gather(first, second)
        return events, pids["first"], pids["second"]

    events, first, second = run(scenario())
    assert events == ["first in", "first out", "second in", "second out"]
    assert second == first  # the one connection, handed on


def test_with_size_two_two_checkouts_hold_two_backends_at_once(url: URL) -> None:
    async def scenario() -> list[int]:
        both_in = asyncio.Barrier(2)

        async def hold() -> int:
            async with pool.connection() as connection:
                pid = await backend_pid(connection)
                await asyncio.wait_for(both_in.wait(), 2.0)
                return pid

        async with connections(url, size=2) as pool:
            return list(await asyncio.gather(hold(), hold()))

    first, second = run(scenario())
    assert first != second


def test_a_healthy_connection_is_reused(url: URL) -> None:
    async def scenario() -> tuple[int, int]:
        async with connections(url) as pool:
            async with pool.connection() as connection:
                first = await backend_pid(connection)
            async with pool.connection() as connection:
                return first, await backend_pid(connection)

    first, second = run(scenario())
    assert second == first


def test_a_connection_older_than_max_age_is_closed_when_its_block_exits(
    url: URL, observer: psycopg.Connection[Any]
) -> None:
    async def scenario() -> tuple[int, int, psycopg.AsyncConnection[Any]]:
        async with connections(url, max_age=0.05) as pool:
            async with pool.connection() as old:
                first = await backend_pid(old)
                await asyncio.sleep(0.1)
            async with pool.connection() as connection:
                return first, await backend_pid(connection), old

    first, second, old = run(scenario())
    assert old.closed
    assert second != first
    wait_gone(observer, {first})


def test_a_connection_that_aged_past_max_age_while_idle_is_not_handed_out(url: URL) -> None:
    async def scenario() -> tuple[int, int]:
        async with connections(url, max_age=0.3) as pool:
            async with pool.connection() as connection:
                first = await backend_pid(connection)  # back well before max_age
            await asyncio.sleep(0.5)
            async with pool.connection() as connection:
                return first, await backend_pid(connection)

    first, second = run(scenario())
    assert second != first


# ---- closing and connecting ----------------------------------------------------------------


def test_close_closes_the_idle_connections_and_refuses_later_checkouts(
    url: URL, observer: psycopg.Connection[Any]
) -> None:
    async def scenario() -> set[int]:
        pool = AsyncConnections(url, 2)
        try:
            pids: set[int] = set()
            both_in = asyncio.Barrier(2)

            async def hold() -> None:
                async with pool.connection() as connection:
                    pids.add(await backend_pid(connection))
                    await asyncio.wait_for(both_in.wait(), 2.0)

            await asyncio.gather(hold(), hold())
            assert len(pids) == 2
            assert all(is_alive(observer, pid) for pid in pids)
        finally:
            await pool.close()
        with pytest.raises(RuntimeError):
            async with pool.connection():
                pass
        return pids

    wait_gone(observer, run(scenario()))


def test_a_connection_in_use_at_close_is_closed_when_its_block_exits(
    url: URL, observer: psycopg.Connection[Any]
) -> None:
    async def scenario() -> tuple[int, psycopg.AsyncConnection[Any]]:
        pool = AsyncConnections(url, 1)
        async with pool.connection() as connection:
            pid = await backend_pid(connection)
            await pool.close()
            assert not connection.closed  # still in use: not pulled from under the block
            await backend_pid(connection)
        return pid, connection

    pid, connection = run(scenario())
    assert connection.closed
    wait_gone(observer, {pid})


def test_an_unreachable_server_fails_the_checkout_promptly_with_dbapierror(url: URL) -> None:
    with socket.socket() as reserved:  # bound, never listening: connections are refused
        reserved.bind(("127.0.0.1", 0))
        nowhere = url.set(host="127.0.0.1", port=reserved.getsockname()[1])

        async def scenario() -> None:
            async with connections(nowhere, size=1) as pool:
                for _ in range(2):  # the failed checkout gave its slot back
                    with pytest.raises(DBAPIError) as raised:
                        async with pool.connection():
                            pass
                    assert isinstance(raised.value, OperationalError)
                    assert isinstance(raised.value.orig, psycopg.OperationalError)

        started = time.monotonic()
        run(scenario(), timeout=4.0)
        assert time.monotonic() - started < 2.0


# ---- the app -------------------------------------------------------------------------------


def test_the_app_answers_201_or_503_when_its_loop_connections_are_killed_and_recovers(
    client: TestClient, factory: Factory, observer: psycopg.Connection[Any], url: URL
) -> None:
    engine = cast(Engine, client.app.state.engine)  # type: ignore[attr-defined]
    headers = factory.headers("credit:check")
    body = {"uscc": factory.merchant(), "purpose": "ONBOARDING"}
    first = client.post("/v1/credit-checks", json=body, headers=headers)
    assert first.status_code == 201, first.text

    # Every other backend of the app's database: the loop's connections and the engine's.
    others = observer.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
        " AND backend_type = 'client backend'",
        (url.database,),
    ).fetchall()
    assert others, "the app holds no connection to its database"
    try:
        terminate(observer, {int(pid) for (pid,) in others})
        # Then the engine's pool reconnects, and only the loop's connections are left dead:
        # each answer's audit event can be written, and a failed audit write (answered 503
        # whatever the check did) cannot hide a 500.
        heal(engine)

        statuses: list[int] = []
        for _ in range(10):
            response = client.post("/v1/credit-checks", json=body, headers=headers)
            statuses.append(response.status_code)
            assert response.status_code in {201, 503}, (statuses, response.text)
            if response.status_code == 201:
                break
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["type"].endswith("/service-unavailable"), response.text
            assert "verdict" not in response.text
        assert statuses[-1] == 201, statuses
        again = client.post("/v1/credit-checks", json=body, headers=headers)
        assert again.status_code == 201, (statuses, again.text)
    finally:
        heal(engine)


def heal(engine: Engine) -> None:
    """Until the engine hands out a live connection. A statement failing on a killed one
    makes SQLAlchemy invalidate the whole pool, and the pool hands out its idle
    connections before it opens any; so afterwards none killed here is handed out (the
    app is shared with the worker's other tests)."""
    for _ in range(3):
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
            return
        except DBAPIError:
            continue
    raise AssertionError("the engine does not reconnect")
