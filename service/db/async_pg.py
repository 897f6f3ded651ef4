"""A few PostgreSQL connections of the event loop, for the single checks' groups.

Single checks are issued in groups (``service.credit_checks.single_service``). On
PostgreSQL a group's two statements (the read, then the write as one statement) run on
the event loop itself, awaited, instead of on worker threads: no thread hand-off and no
contention for the GIL per request, and the loop goes on serving while a group waits on
the server (bench/RESULTS.md, the ninth pass). The rest of the app keeps the synchronous
engine; these connections are psycopg's own, in autocommit mode (each statement its own
transaction, as ``round_trips.without_transaction`` makes the threads' connections), with
the engine's address and connect timeout.

A driver error is raised as SQLAlchemy's (``DBAPIError.instance``), which the handlers
answer as every database failure (``503``); the connection it happened on is closed, never
reused, and when that connection is found broken (the server restarted, say) the idle ones
are closed with it, as the engine's pool invalidates itself on a disconnect: a restart
costs the groups in flight, not one more per idle connection.

Nothing on these connections may hang a group, and the requests waiting for it, for
long: the server cancels any statement that runs ``statement_timeout`` seconds (its
``statement_timeout``, set at connect), and a block that holds a connection
``statement_timeout + grace`` seconds (a server or network that stopped answering) is
abandoned here; either is a driver error (``503``) and the connection is closed. A
group's statements take milliseconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import psycopg
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, StatementError

CONNECT_TIMEOUT_SECONDS = 5
MAX_AGE_SECONDS = 1800.0
"""As the engine's ``pool_recycle``: a connection is closed after this long, not reused."""
STATEMENT_TIMEOUT_SECONDS = 5.0
DEADLINE_GRACE_SECONDS = 2.0


class ConnectionsClosed(RuntimeError):
    """A checkout after :meth:`AsyncConnections.close` (the app is shutting down)."""


class AsyncConnections:
    """At most ``size`` autocommit connections, opened on first need and kept for reuse.

    For one event loop (psycopg's asynchronous connections wait on the loop that runs
    them); :meth:`close` on that loop closes them. A checkout waits while all are in use.
    """

    def __init__(
        self,
        url: URL,
        size: int,
        *,
        max_age: float = MAX_AGE_SECONDS,
        statement_timeout: float = STATEMENT_TIMEOUT_SECONDS,
        grace: float = DEADLINE_GRACE_SECONDS,
    ) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        if statement_timeout <= 0 or grace <= 0:
            raise ValueError("statement_timeout and grace must be > 0")
        # The engine's own reading of its URL (several hosts, query parameters), so that
        # these connections go where the engine's do.
        psycopg_url = url.set(drivername="postgresql+psycopg")
        _, connect_args = psycopg_url.get_dialect()().create_connect_args(psycopg_url)
        milliseconds = max(1, round(statement_timeout * 1000))
        options = f"{connect_args.get('options', '')} -c statement_timeout={milliseconds}"
        self._connect_args = {**connect_args, "options": options.strip()}
        self._deadline = statement_timeout + grace
        self._slots = asyncio.Semaphore(size)
        self._idle: list[tuple[float, psycopg.AsyncConnection[Any]]] = []
        self._max_age = max_age
        self._closed = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection for the block; closed instead of kept if the block raised."""
        async with self._slots:
            if self._closed:
                raise ConnectionsClosed("the connections are closed")
            opened, connection = await self._checkout()
            try:
                async with asyncio.timeout(self._deadline) as deadline:
                    yield connection
            except TimeoutError as exc:
                await _close_quietly(connection)
                if not deadline.expired():  # the block's own error, not the deadline's
                    raise
                timed_out = psycopg.OperationalError("no answer from the database in time")
                raise DBAPIError.instance(
                    None, None, timed_out, psycopg.Error, connection_invalidated=True
                ) from exc
            except BaseException:
                await _close_quietly(connection)
                if connection.broken:  # the others are likely gone too
                    await self._close_idle()
                raise
            if connection.broken:
                await _close_quietly(connection)
                await self._close_idle()
            elif self._closed or time.monotonic() - opened > self._max_age:
                await _close_quietly(connection)
            else:
                self._idle.append((opened, connection))

    async def close(self) -> None:
        """Close the idle connections; those in use are closed when they come back."""
        self._closed = True
        await self._close_idle()

    async def _close_idle(self) -> None:
        idle, self._idle = self._idle, []
        for _, connection in idle:
            await _close_quietly(connection)

    async def _checkout(self) -> tuple[float, psycopg.AsyncConnection[Any]]:
        """The most recently used idle connection young enough (older ones are closed:
        a server or firewall may have dropped them while idle), else a new one."""
        while self._idle:
            opened, connection = self._idle.pop()
            if time.monotonic() - opened <= self._max_age and not connection.broken:
                return opened, connection
            await _close_quietly(connection)
        return await self._connect()

    async def _connect(self) -> tuple[float, psycopg.AsyncConnection[Any]]:
        try:
            connection = await psycopg.AsyncConnection.connect(
                **{**self._connect_args, "connect_timeout": CONNECT_TIMEOUT_SECONDS},
                autocommit=True,
            )
        except psycopg.Error as exc:
            raise DBAPIError.instance(None, None, exc, psycopg.Error) from exc
        return time.monotonic(), connection


async def fetch_all(
    connection: psycopg.AsyncConnection[Any], sql: str, parameters: Any
) -> list[tuple[Any, ...]]:
    """The rows of one statement."""
    try:
        cursor = await connection.execute(sql, parameters)
        return await cursor.fetchall()
    except psycopg.Error as exc:
        raise _sqlalchemy_error(connection, sql, parameters, exc) from exc


async def execute(connection: psycopg.AsyncConnection[Any], sql: str, parameters: Any) -> None:
    """One statement, its result unread (on an autocommit connection, committed)."""
    try:
        await connection.execute(sql, parameters)
    except psycopg.Error as exc:
        raise _sqlalchemy_error(connection, sql, parameters, exc) from exc


def _sqlalchemy_error(
    connection: psycopg.AsyncConnection[Any], sql: str, parameters: Any, exc: psycopg.Error
) -> StatementError:
    return DBAPIError.instance(
        sql, parameters, exc, psycopg.Error, connection_invalidated=connection.broken
    )


async def _close_quietly(connection: psycopg.AsyncConnection[Any]) -> None:
    with suppress(psycopg.Error):  # already gone
        await connection.close()
