"""``service.db.round_trips`` and ``bulk_insert.run_as_one_statement`` on the suite's
database: what a one-statement write outside a transaction commits or refuses, what a read
outside a transaction leaves behind, and that the pool gets every connection back clean
(on SQLite the helpers run the statements one by one in a transaction, and the same
holds)."""

from __future__ import annotations

from typing import cast

import pytest
from fastapi.testclient import TestClient
from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, Engine, Table, event, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from service.credit_checks.repository import insert_checks, prepare_checks
from service.db.base import utcnow
from service.db.bulk_insert import run_as_one_statement
from service.db.round_trips import without_transaction
from service.ids import new_id
from service.models import CreditCheck

CHECKS = cast(Table, CreditCheck.__table__)


@pytest.fixture
def engine(app_client: TestClient) -> Engine:
    return cast(Engine, app_client.app.state.engine)  # type: ignore[attr-defined]


def _check_row() -> dict[str, object]:
    return {
        "id": new_id("chk"),
        "client_id": "cli_round_trips",
        "created_at": utcnow(),
        "uscc": "91350100M000100Y43",
        "purpose": "ONBOARDING",
        "verdict": "CLEAR",
        "policy_version": "1",
        "reference": None,
        "consent_ref": None,
        "body": '{"ok":true}',
    }


def _stored(engine: Engine, rows: list[dict[str, object]]) -> set[str]:
    with engine.connect() as connection:
        found = connection.scalars(
            select(CHECKS.c.id).where(CHECKS.c.id.in_([r["id"] for r in rows]))
        )
        return set(found)


def _in_transaction(engine: Engine) -> bool:
    """Whether the next connection the pool hands out has a transaction open (PostgreSQL
    tells; SQLite's pool connections never do here)."""
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        info = getattr(driver, "info", None)
        return info is not None and info.transaction_status != TransactionStatus.IDLE


def _write_together(connection: Connection, *groups: list[dict[str, object]]) -> None:
    """Each group of rows as one insert, all of them as one statement, outside a
    transaction (as a group of single checks is written on PostgreSQL, where nothing is
    committed afterwards: the statement was its own transaction)."""
    with without_transaction(connection):
        run_as_one_statement(connection, [prepare_checks(connection.dialect, g) for g in groups])
    if connection.dialect.name != "postgresql":
        connection.commit()  # SQLite: the inserts ran in the connection's transaction


def test_one_statement_outside_a_transaction_commits_every_insert(engine: Engine) -> None:
    first, second = [_check_row()], [_check_row(), _check_row()]
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    with engine.connect() as connection:
        event.listen(connection, "before_cursor_execute", count)
        _write_together(connection, first, second)
    assert _stored(engine, first + second) == {str(r["id"]) for r in first + second}
    assert not _in_transaction(engine)
    if engine.dialect.name == "postgresql":  # one statement, no BEGIN or COMMIT sent
        assert len(statements) == 1
        assert statements[0].startswith("WITH inserted_0 AS (INSERT INTO")
    else:
        assert len(statements) == 2


def test_a_failing_insert_fails_the_statement_and_nothing_is_stored(engine: Engine) -> None:
    """The first insert is not stored when the second fails (one statement, one
    transaction); the error is SQLAlchemy's, and the connection goes back to the pool with
    no transaction open."""
    existing = _check_row()
    with engine.begin() as connection:
        insert_checks(connection, [existing])
    fresh = _check_row()

    for _ in range(3):  # the pool's connection is usable again each time
        with pytest.raises(IntegrityError), engine.connect() as connection:
            _write_together(connection, [fresh], [existing])
        assert _stored(engine, [fresh]) == set()
        assert not _in_transaction(engine)


def test_reads_outside_a_transaction_leave_none_open(engine: Engine) -> None:
    row = _check_row()
    with engine.begin() as connection:
        insert_checks(connection, [row])
    with engine.connect() as connection:
        with without_transaction(connection):
            assert connection.scalar(select(CHECKS.c.verdict).where(CHECKS.c.id == row["id"]))
            driver = connection.connection.driver_connection
            if connection.dialect.name == "postgresql":
                assert driver.info.transaction_status == TransactionStatus.IDLE  # type: ignore[union-attr]
        if connection.dialect.name == "postgresql":
            assert driver.autocommit is False  # type: ignore[union-attr]
    assert not _in_transaction(engine)


def _kill_backend(engine: Engine, connection: Connection) -> None:
    """Terminate the server process of ``connection`` (PostgreSQL), as a restart would."""
    driver = connection.connection.driver_connection
    pid = driver.info.backend_pid  # type: ignore[union-attr]
    with engine.connect() as other:
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


def test_a_connection_lost_before_a_write_is_sqlalchemys_error(engine: Engine) -> None:
    """A lost server is SQLAlchemy's error (the fast path answers it 503), and the broken
    connection never goes back to the pool: the next checkout works."""
    if engine.dialect.name != "postgresql":
        pytest.skip("autocommit writes are PostgreSQL's")
    row, other = _check_row(), _check_row()
    with engine.connect() as connection:
        with without_transaction(connection):
            connection.execute(text("SELECT 1"))
        _kill_backend(engine, connection)
        with pytest.raises(DBAPIError):
            _write_together(connection, [row], [other])
    assert _stored(engine, [row, other]) == set()
    assert not _in_transaction(engine)
    for _ in range(3):
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1


def test_a_connection_lost_during_a_read_outside_a_transaction(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("autocommit reads are PostgreSQL's")
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
        connection.commit()
        _kill_backend(engine, connection)
        with pytest.raises(DBAPIError), without_transaction(connection):
            connection.execute(text("SELECT 1"))
    for _ in range(3):  # no connection of the pool is left broken or in autocommit mode
        with engine.connect() as connection:
            driver = connection.connection.driver_connection
            assert getattr(driver, "autocommit", False) is False
            assert connection.execute(text("SELECT 1")).scalar() == 1
