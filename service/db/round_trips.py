"""Fewer round trips to PostgreSQL on a hot path (psycopg 3; no-ops off PostgreSQL).

psycopg sends ``BEGIN`` as a statement of its own before the first statement of a
transaction, and waits for each statement's answer before it sends the next. A group of
single checks read in one statement and wrote in two, with its ``BEGIN`` and ``COMMIT``:
five round trips, each costing the client and the server a wake-up and a few dozen
microseconds of CPU. With these two helpers it is two: the read runs outside any
transaction (:func:`without_transaction`), and the writes go with their ``BEGIN`` and
``COMMIT`` in one message and one answer (:func:`pipelined`). Measured in
``bench/RESULTS.md`` (fifth pass).
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
    its own snapshot, as under READ COMMITTED anyway. Only for reads, on a connection with
    no transaction open (a fresh checkout)."""
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


@contextmanager
def pipelined(connection: Connection) -> Iterator[None]:
    """Statements executed inside are sent without waiting for their answers (psycopg's
    pipeline mode) and answered together at the next sync: ``connection.commit()`` inside
    the block sends the ``COMMIT`` and syncs, so ``BEGIN``, the statements and ``COMMIT``
    cost one round trip. A failing statement fails the transaction; its error is raised by
    the ``commit()`` (translated by SQLAlchemy, as any driver error). Only statements that
    return no rows belong inside."""
    driver = _psycopg(connection)
    if driver is None:
        yield
        return
    try:
        with driver.pipeline():
            yield
    except BaseException as exc:
        # After a failed statement the server skips the rest of the pipeline, the COMMIT
        # too, and the transaction stays open and aborted; SQLAlchemy's pool takes a failed
        # commit as one that ended the transaction and would return the connection as it
        # is. End it here; a connection that cannot even do that is discarded.
        try:
            driver.rollback()
        except psycopg.Error:
            connection.invalidate()
        if isinstance(exc, psycopg.Error):  # from the pipeline's own sync, past SQLAlchemy
            raise DBAPIError.instance(None, None, exc, psycopg.Error) from exc
        raise
