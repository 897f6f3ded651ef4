"""Rows written through ``service.db.bulk_insert`` are the rows Core writes: the same
stored values (read raw, as the database holds them) and the same values read back
through the ORM, on the suite's database (SQLite, or PostgreSQL in CI)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import cast

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, Table, insert, select, text
from sqlalchemy.exc import IntegrityError

from audit.context import RequestAudit
from audit.recorder import EVENT_COLUMNS, event_values, insert_event_rows
from service.credit_checks.repository import CHECK_COLUMNS, insert_checks
from service.db.bulk_insert import BulkInsert
from service.ids import new_id
from service.models import AuditEvent, CreditCheck
from tests.audit.support import wait_sealed

EVENTS = cast(Table, AuditEvent.__table__)
CHECKS = cast(Table, CreditCheck.__table__)


@pytest.fixture
def engine(app_client: TestClient) -> Engine:
    return cast(Engine, app_client.app.state.engine)  # type: ignore[attr-defined]


def _wait_sealed(client: TestClient, rows: list[dict[str, object]]) -> None:
    """Back-dated events in the worker's shared log are an old backlog (``/readyz`` answers
    503) until the sequencer has sealed them: a test that writes them waits for that."""
    wait_sealed(client.app.state.sessionmaker, [str(r["id"]) for r in rows])  # type: ignore[attr-defined]


def _event_rows() -> list[dict[str, object]]:
    """Events as the hot paths build them, with awkward values: a timestamp in another
    zone, one on a whole second (no microseconds), non-ASCII and nested details, nulls."""
    ctx = RequestAudit(new_id("req"), "127.0.0.1", "POST", "/v1/credit-checks")
    ctx.actor_client_id, ctx.actor_kind = "cli_bulk", "client"
    ctx.uscc, ctx.purpose = "91350100M000100Y43", "ONBOARDING"
    ctx.details.update(verdict="CAUTION", note='河西区 \u2028 "quoted"', nested={"a": [1, 2.5]})
    east = timezone(timedelta(hours=8))
    rows = [
        event_values(ctx, 201, now=datetime(2026, 11, 30, 8, 0, 1, 123456, tzinfo=east)),
        event_values(ctx, 404, now=datetime(2026, 11, 30, 0, 0, 2, tzinfo=UTC)),
    ]
    bare = RequestAudit(new_id("req"), None, "GET", "/x")
    rows.append(event_values(bare, 500))
    return rows


def _stored(engine: Engine, table: Table, key: str, ids: list[object]) -> list[tuple[object, ...]]:
    """The rows as the database holds them (no type processing), in ``ids`` order."""
    columns = EVENT_COLUMNS if table is EVENTS else CHECK_COLUMNS
    sql = text(f"SELECT {', '.join(columns)} FROM {table.name} WHERE {key} = :id")
    with engine.connect() as conn:
        return [tuple(conn.execute(sql, {"id": i}).one()) for i in ids]


def _through_orm(engine: Engine, table: Table, ids: list[object]) -> list[tuple[object, ...]]:
    columns = EVENT_COLUMNS if table is EVENTS else CHECK_COLUMNS
    with engine.connect() as conn:
        return [
            tuple(conn.execute(select(*(table.c[c] for c in columns)).where(table.c.id == i)).one())
            for i in ids
        ]


def _twin(rows: list[dict[str, object]], prefix: str) -> list[dict[str, object]]:
    return [{**row, "id": new_id(prefix)} for row in rows]


def test_events_match_core(engine: Engine, app_client: TestClient) -> None:
    core_rows = _event_rows()
    bulk_rows = _twin(core_rows, "evt")
    with engine.begin() as conn:
        conn.execute(insert(EVENTS), core_rows)
        insert_event_rows(conn, bulk_rows)
    core_ids = [r["id"] for r in core_rows]
    bulk_ids = [r["id"] for r in bulk_rows]
    strip = slice(1, None)  # everything but the id
    assert [r[strip] for r in _stored(engine, EVENTS, "id", bulk_ids)] == [
        r[strip] for r in _stored(engine, EVENTS, "id", core_ids)
    ]
    bulk = _through_orm(engine, EVENTS, bulk_ids)
    assert [r[strip] for r in bulk] == [r[strip] for r in _through_orm(engine, EVENTS, core_ids)]
    # and they are the values given, the timestamps in UTC
    assert bulk[0][1] == datetime(2026, 11, 30, 0, 0, 1, 123456, tzinfo=UTC)
    assert bulk[0][-1] == core_rows[0]["details"]
    _wait_sealed(app_client, core_rows + bulk_rows)


def test_checks_match_core(engine: Engine) -> None:
    """Several rows, so that the bodies (sent beside the JSON rows on PostgreSQL, as a text
    array zipped with them) must land on their own rows; bodies with quotes, backslashes,
    escapes and non-ASCII text, and one that is not JSON (a sealed body)."""
    now = datetime(2026, 11, 30, 9, 30, tzinfo=timezone(timedelta(hours=-5)))
    bodies = [
        '{"verdict":"CLEAR"}',
        '{"name":"\\"河西\\" \\\\ 商行","reasons":["a\\nb"],"x":null}',
        "v1.sealed.AbC-_xyz==",
        '{"records":[{"summary":"它说 \\"不\\"","n":1.5}],"empty":""}',
    ]
    core_rows: list[dict[str, object]] = [
        {
            "id": new_id("chk"),
            "client_id": f"cli_bulk_{n}",
            "created_at": now + timedelta(seconds=n),
            "uscc": "91350100M000100Y43",
            "purpose": "ONBOARDING",
            "verdict": "CLEAR",
            "policy_version": "v1",
            "reference": None if n % 2 else f"ref-{n}",
            "consent_ref": "consent-河西",
            "body": body,
        }
        for n, body in enumerate(bodies)
    ]
    bulk_rows = _twin(core_rows, "chk")
    with engine.begin() as conn:
        conn.execute(insert(CHECKS), core_rows)
        insert_checks(conn, bulk_rows)
    core_ids = [row["id"] for row in core_rows]
    bulk_ids = [row["id"] for row in bulk_rows]
    stored = [row[1:] for row in _stored(engine, CHECKS, "id", bulk_ids)]
    assert stored == [row[1:] for row in _stored(engine, CHECKS, "id", core_ids)]
    assert [row[-1] for row in stored] == bodies
    bulk = _through_orm(engine, CHECKS, bulk_ids)
    assert [row[1:] for row in bulk] == [row[1:] for row in _through_orm(engine, CHECKS, core_ids)]
    assert bulk[0][2] == now.astimezone(UTC)


def test_rows_join_the_callers_transaction(engine: Engine) -> None:
    """Rolled back with the transaction they were written in."""
    rows = _event_rows()
    with engine.connect() as conn:
        insert_event_rows(conn, rows)
        conn.rollback()
    assert not any(_count(engine, str(r["id"])) for r in rows)


def _count(engine: Engine, event_id: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM audit_events WHERE id = :id"), {"id": event_id}
            ).scalar_one()
        )


def test_refuses_what_core_refuses(engine: Engine) -> None:
    rows = _event_rows()
    rows[0]["occurred_at"] = datetime(2026, 11, 30)  # naive
    with engine.connect() as conn, pytest.raises(ValueError, match="naive"):
        insert_event_rows(conn, rows)
    with pytest.raises(ValueError, match="no column"):
        BulkInsert(EVENTS, ["id", "nope"])


def test_driver_errors_are_sqlalchemy_errors(engine: Engine, app_client: TestClient) -> None:
    """A conflict (and so a lost database) surfaces as SQLAlchemy's error, as from any other
    statement: the fast path answers those 503 and the sequencer retries on them."""
    rows = _event_rows()[:1]
    with engine.begin() as conn:
        insert_event_rows(conn, rows)
    with engine.connect() as conn, pytest.raises(IntegrityError):
        insert_event_rows(conn, rows)
    _wait_sealed(app_client, rows)
