"""Reading merchants for a group of checks: one statement for any number of codes, the
same subjects as reading them one by one (on SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from schemas.uscc import ALPHABET, check_character
from service.credit_checks.repository import Subject, load_subject, load_subjects
from tests.fixtures.factories import Factory


def _unknown(index: int) -> str:
    body = "91120000MA" + "".join(ALPHABET[(index * 7 + i) % 31] for i in range(7))
    return body + check_character(body)


def test_many_codes_read_as_each_alone(client: TestClient, factory: Factory) -> None:
    engine: Engine = client.app.state.engine  # type: ignore[attr-defined]
    today = date.today()
    known = [factory.merchant() for _ in range(5)]
    factory.record(known[0])
    factory.record(known[0], severity="SERIOUS")
    factory.record(known[1], status="REPAIRED")  # no longer counts: not read
    factory.record(  # its publicity ended: not read
        known[2], decided_on=today - timedelta(days=800), publicity_until=today - timedelta(days=1)
    )
    factory.record(known[3], status="UNDER_OBJECTION")
    codes = [*known, *(_unknown(i) for i in range(150))]  # more than any group

    with engine.connect() as conn:
        together = load_subjects(conn, set(codes), today)
        alone = {code: load_subject(conn, code, today) for code in codes}

    def in_order(subject: Subject) -> Subject:  # records come in no particular order
        return replace(subject, records=sorted(subject.records))

    assert {code: in_order(s) for code, s in together.items()} == {
        code: in_order(s) for code, s in alone.items() if s is not None
    }
    assert sorted(together) == sorted(known)
    assert [len(together[code].records) for code in known] == [2, 0, 0, 1, 0]
    with engine.connect() as conn:
        assert load_subjects(conn, set(), today) == {}


def test_a_driver_error_is_sqlalchemys() -> None:
    """The group read runs on the driver's cursor: its errors still arrive as SQLAlchemy's
    (a lost database is answered 503 from those)."""
    engine = create_engine("sqlite://")  # no tables: the query fails in the driver
    try:
        with engine.connect() as conn, pytest.raises(OperationalError):
            load_subjects(conn, {"91350100M000100Y43"}, date(2026, 11, 30))
    finally:
        engine.dispose()


def test_a_connection_lost_during_the_group_read_is_invalidated(client: TestClient) -> None:
    """As Core would: the error says the connection was invalidated, the broken connection
    never goes back to the pool, and the next checkout works."""
    engine: Engine = client.app.state.engine  # type: ignore[attr-defined]
    if engine.dialect.name != "postgresql":
        pytest.skip("a server connection to lose is PostgreSQL's")
    with engine.connect() as conn:
        pid = conn.connection.driver_connection.info.backend_pid  # type: ignore[union-attr]
        conn.rollback()
        with engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(DBAPIError) as raised:
            load_subjects(conn, {"91350100M000100Y43"}, date(2026, 11, 30))
        assert raised.value.connection_invalidated
        assert conn.invalidated
    for _ in range(3):
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1


def test_the_group_read_runs_on_a_generic_plan(client: TestClient, factory: Factory) -> None:
    """Planning the subjects read costs more than running it. With the codes' array in
    ``= ANY(:codes)``, the custom plans of small groups (here one to three codes, on a
    registry with statistics) cost less than the generic plan, so PostgreSQL planned each
    execution again; read through an InitPlan, the statement runs on the generic plan once
    psycopg has prepared it (five executions) and PostgreSQL has tried five custom plans.
    The registry is filled and analysed inside a transaction that is rolled back."""
    engine: Engine = client.app.state.engine  # type: ignore[attr-defined]
    if engine.dialect.name != "postgresql":
        pytest.skip("plan caching is PostgreSQL's")
    known = [factory.merchant() for _ in range(3)]
    with engine.connect() as conn:
        conn.execute(
            text(
                "INSERT INTO merchants (uscc, name, entity_type, registration_status,"
                " legacy_code, org_code_warning, created_at, updated_at, data_updated_at)"
                " SELECT 'ZZPLAN' || lpad(n::text, 12, '0'), 'plan test', 'COMPANY', 'ACTIVE',"
                " false, false, now(), now(), now() FROM generate_series(1, 5000) AS n"
            )
        )
        conn.execute(text("ANALYZE merchants"))
        for index in range(15):
            wanted = known[: 1 + index % 3]
            found = load_subjects(conn, {*wanted, _unknown(index)}, date.today())
            assert sorted(found) == sorted(wanted)
        plans = conn.execute(
            text(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE 'SELECT merchants.uscc%'"
            )
        ).one()
        conn.rollback()
    assert plans.generic_plans >= 1, plans
    assert plans.custom_plans <= 5, plans
