"""Fewer round trips to PostgreSQL on a hot path (psycopg 3; no-ops off PostgreSQL).

psycopg sends ``BEGIN`` as a statement of its own before the first statement of a
transaction, and waits for each statement's answer before it sends the next. A group of
single checks read in one statement and wrote in two, with its ``BEGIN`` and ``COMMIT``:
five round trips, each costing the client and the server a wake-up and a few dozen
microseconds of CPU. Outside a transaction (:func:`without_transaction`) it is two: the
read, and the write as one statement (``bulk_insert.run_as_one_statement``), which
PostgreSQL commits on its own, atomically. Measured in ``bench/RESULTS.md`` (fifth and
sixth passes).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError


def _psycopg(connection: Connection) -> psycopg.Connection[Any] | None:
    if connection.dialect.name != "postgresql":
        return None
    driver = connection.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)  # the only PostgreSQL driver we install
    return driver


@contextmanager
def without_transaction(connection: Connection) -> Iterator[None]:
    """Statements executed inside run in autocommit mode: no ``BEGIN``, each statement
    its own snapshot (as under READ COMMITTED anyway) and its own transaction, committed
    when it returns. For reads, and for a write that is one statement; on a connection
    with no transaction open (a fresh checkout)."""
    driver = _psycopg(connection)
    if driver is None:
        yield
        return
    try:
        driver.autocommit = True
    except psycopg.Error as exc:  # a connection found broken (or busy): not for the pool
        connection.invalidate()
        raise DBAPIError.instance(None, None, exc, psycopg.Error) from exc
    try:
        yield
    finally:
        try:
            driver.autocommit = False
        except psycopg.Error:
            # The connection broke meanwhile: it must not go back to the pool, least of
            # all in autocommit mode (the error of the read, if any, is the one raised).
            connection.invalidate()
