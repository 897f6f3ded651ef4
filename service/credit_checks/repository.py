"""All SQL for credit checks: the registry data a check reads, and stored checks.

A check reads its merchant and the merchant's counting records in ONE statement (the
merchant joined to its records by the ``uscc`` index), and a batch reads all of its
merchants and their records in one statement too (``WHERE uscc IN (...)``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple, cast

import orjson
import psycopg
from sqlalchemy import (
    Connection,
    Date,
    Dialect,
    Select,
    String,
    Table,
    and_,
    any_,
    bindparam,
    func,
    literal,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from service.db import async_pg
from service.db.bulk_insert import BulkInsert, PreparedInsert
from service.models import CreditCheck, CreditRecord, Merchant
from service.policy.engine import COUNTING_STATUSES


class RecordData(NamedTuple):
    id: str
    category: str
    severity: str
    status: str
    authority: str
    document_no: str
    decided_on: date
    publicity_until: date | None
    summary: str


@dataclass(slots=True)
class Subject:
    """A merchant as a check sees it, with the records that may count today."""

    uscc: str
    name: str
    name_masked: str | None
    entity_type: str
    registration_status: str
    registered_on: date | None
    legal_representative_masked: str | None
    legal_representative_enc: str | None
    data_updated_at: datetime
    records: list[RecordData] = field(default_factory=list)


# Plain Core on the tables: these statements are built once and executed on the session's
# connection, skipping per-call statement construction and the ORM execution layer.
_merchants = Merchant.__table__
_records = CreditRecord.__table__
_MERCHANT_COLUMNS = tuple(
    _merchants.c[name]
    for name in (
        "uscc",
        "name",
        "name_masked",
        "entity_type",
        "registration_status",
        "registered_on",
        "legal_representative_masked",
        "legal_representative_enc",
        "data_updated_at",
    )
)
_RECORD_COLUMNS = tuple(_records.c[name] for name in RecordData._fields)
_MERCHANT_WIDTH = len(_MERCHANT_COLUMNS)

# Only records that can count are fetched (the engine checks again: it is pure). The
# join follows the index on credit_records.uscc.
_COUNTING = and_(
    _records.c.uscc == _merchants.c.uscc,
    # One bound parameter per status, fixed: an IN list of values would be rendered
    # into the statement again on every execution.
    _records.c.status.in_([literal(status) for status in sorted(COUNTING_STATUSES)]),
    or_(
        _records.c.publicity_until.is_(None),
        _records.c.publicity_until >= bindparam("today", type_=Date()),
    ),
)
_SUBJECTS = select(*_MERCHANT_COLUMNS, *_RECORD_COLUMNS).select_from(
    _merchants.outerjoin(_records, _COUNTING)
)
_ONE_SUBJECT = _SUBJECTS.where(_merchants.c.uscc == bindparam("uscc"))
# The codes go as one parameter, so that the statement is the same for any number of
# codes and not re-rendered per call as an expanding IN list is: an array on PostgreSQL,
# a JSON array read by json_each on SQLite.
#
# On PostgreSQL the array is read back through ``ARRAY(SELECT unnest(...))``, an InitPlan
# whose length the planner cannot see. With the parameter itself in ``= ANY(...)``, each
# custom plan saw the array's length; PostgreSQL keeps planning a prepared statement afresh
# while the generic plan costs more than the average custom plan so far, and after a few
# small groups (a quiet server, a new connection) that was forever: 240 µs of server CPU a
# read of 14 codes, 120 on the generic plan this form gets after five executions
# (bench/RESULTS.md, eighth pass).
_CODES = bindparam("codes", type_=ARRAY(String()))
_MANY_SUBJECTS_PG = _SUBJECTS.where(
    _merchants.c.uscc
    == any_(func.array(select(func.unnest(_CODES)).scalar_subquery(), type_=ARRAY(String())))
)
_MANY_SUBJECTS = _SUBJECTS.where(
    _merchants.c.uscc.in_(
        select(literal_column("value")).select_from(func.json_each(bindparam("codes_json")))
    )
)
_CHECKS_TABLE = cast(Table, CreditCheck.__table__)
CHECK_COLUMNS = tuple(column.name for column in _CHECKS_TABLE.columns)
"""The columns of a stored check: every row that :func:`insert_checks` writes holds them."""
_INSERT_CHECKS = BulkInsert(_CHECKS_TABLE, CHECK_COLUMNS, long_text=("body",))


def _connection(db: Session | Connection) -> Connection:
    return db if isinstance(db, Connection) else db.connection()


def _collect(rows: Sequence[Sequence[object]]) -> dict[str, Subject]:
    subjects: dict[str, Subject] = {}
    for row in rows:
        uscc = row[0]
        assert isinstance(uscc, str)
        subject = subjects.get(uscc)
        if subject is None:
            subject = Subject(*row[:_MERCHANT_WIDTH])  # type: ignore[arg-type]
            subjects[uscc] = subject
        if row[_MERCHANT_WIDTH] is not None:
            subject.records.append(RecordData(*row[_MERCHANT_WIDTH:]))  # type: ignore[arg-type]
    return subjects


def load_subject(db: Session | Connection, uscc: str, today: date) -> Subject | None:
    rows = _connection(db).execute(_ONE_SUBJECT, {"uscc": uscc, "today": today}).all()
    return _collect(rows).get(uscc)


def load_subjects(
    db: Session | Connection, codes: Collection[str], today: date
) -> dict[str, Subject]:
    """Every merchant of ``codes`` that the registry holds, with its counting records, in
    one statement (see :class:`_DriverSelect` for why it is run as driver SQL)."""
    if not codes:
        return {}
    connection = _connection(db)
    dialect = connection.dialect
    if dialect.name == "postgresql":
        values: dict[str, object] = {"codes": sorted(codes), "today": today}
    else:
        values = {"codes_json": orjson.dumps(sorted(codes)).decode(), "today": today}
    return _collect(_select_many(dialect).rows(connection, values))


async def load_subjects_async(
    connection: psycopg.AsyncConnection[Any], dialect: Dialect, codes: set[str], today: date
) -> dict[str, Subject]:
    """:func:`load_subjects` on an event loop's PostgreSQL connection (``dialect``: the
    engine's, whose types convert the values)."""
    if not codes:
        return {}
    values: dict[str, object] = {"codes": sorted(codes), "today": today}
    return _collect(await _select_many(dialect).rows_async(connection, values))


def _select_many(dialect: Dialect) -> _DriverSelect:
    select_many = _SELECT_MANY.get(dialect.name)
    if select_many is None:
        statement = _MANY_SUBJECTS_PG if dialect.name == "postgresql" else _MANY_SUBJECTS
        select_many = _SELECT_MANY[dialect.name] = _DriverSelect(statement, dialect)
    return select_many


class _DriverSelect:
    """A Core SELECT compiled once per dialect and run on the driver's cursor, its bound
    values and result columns converted by the types' own processors, as Core would.

    Core's execution of the group's subjects query cost more than the query itself: the
    compiled-cache lookup, the execution context and a processed ``Row`` per result row
    (groups of 12 to 15 codes: SQLite 136 against 96 µs per group, PostgreSQL 270 against
    209). A driver error is raised as SQLAlchemy's (``DBAPIError.instance``), which is what
    callers catch, and a lost connection is invalidated; ``tests/service/credit_checks/test_repository.py`` requires the subjects
    read this way to equal those read through Core, on both databases."""

    def __init__(self, statement: Select[Any], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self._sql = str(compiled)
        self._positional = tuple(compiled.positiontup or ()) if compiled.positional else None
        self._fixed = dict(compiled.params)
        self._bind = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in ((b.key, b) for b in compiled.binds.values())
        }
        processors = (
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in statement.selected_columns
        )
        self._convert = tuple(
            (index, process) for index, process in enumerate(processors) if process is not None
        )

    def rows(self, connection: Connection, values: Mapping[str, object]) -> list[tuple[Any, ...]]:
        bound = self._bound(values)
        dialect, driver_error = connection.dialect, connection.dialect.loaded_dbapi.Error
        dbapi = connection.connection
        cursor = dbapi.cursor()
        try:
            cursor.execute(self._sql, bound)
            raw = cursor.fetchall()
        except driver_error as exc:
            # As Core does: a connection the dialect finds lost is invalidated, so that it
            # never goes back to the pool, and the error says so.
            lost = dialect.is_disconnect(exc, dbapi.driver_connection, cursor)
            if lost:
                connection.invalidate(exc)
            raise DBAPIError.instance(
                self._sql, bound, exc, driver_error, connection_invalidated=lost
            ) from exc
        finally:
            with suppress(driver_error):  # closing on a connection that is gone
                cursor.close()
        return self._converted(raw)

    async def rows_async(
        self, connection: psycopg.AsyncConnection[Any], values: Mapping[str, object]
    ) -> list[tuple[Any, ...]]:
        """:meth:`rows` on an event loop's PostgreSQL connection (``service.db.async_pg``)."""
        return self._converted(await async_pg.fetch_all(connection, self._sql, self._bound(values)))

    def _bound(self, values: Mapping[str, object]) -> Any:
        params: dict[str, object] = {**self._fixed, **values}
        for name, process in self._bind.items():
            if process is not None:
                params[name] = process(params[name])
        return params if self._positional is None else tuple(params[n] for n in self._positional)

    def _converted(self, raw: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        if not self._convert:
            return [tuple(row) for row in raw]
        converted: list[tuple[Any, ...]] = []
        for row in raw:
            values_ = list(row)
            for index, process in self._convert:
                values_[index] = process(values_[index])
            converted.append(tuple(values_))
        return converted


_SELECT_MANY: dict[str, _DriverSelect] = {}


def insert_checks(db: Session | Connection, rows: Sequence[Mapping[str, object]]) -> None:
    """Insert issued checks now, in one statement (no RETURNING: the ids are ours); each
    row holds :data:`CHECK_COLUMNS`."""
    _INSERT_CHECKS.execute(_connection(db), rows)


def prepare_checks(dialect: Dialect, rows: Sequence[Mapping[str, object]]) -> PreparedInsert:
    """:func:`insert_checks`, converted now and run later (``PreparedInsert.run``)."""
    return _INSERT_CHECKS.prepare(dialect, rows)


class StoredCheck(NamedTuple):
    id: str
    uscc: str
    purpose: str
    body: str


_STORED_COLUMNS = (CreditCheck.id, CreditCheck.uscc, CreditCheck.purpose, CreditCheck.body)


def get_for_client(session: Session, client_id: str, check_id: str) -> StoredCheck | None:
    """The check, only if it is this client's (another client's is as good as absent)."""
    row = session.execute(
        select(*_STORED_COLUMNS).where(
            CreditCheck.id == check_id, CreditCheck.client_id == client_id
        )
    ).first()
    return None if row is None else StoredCheck(*row)


def list_for_client(
    session: Session, client_id: str, *, limit: int, before: str | None
) -> list[StoredCheck]:
    """Up to ``limit + 1`` of the client's checks, newest first (ids are time-ordered)."""
    query = select(*_STORED_COLUMNS).where(CreditCheck.client_id == client_id)
    if before is not None:
        query = query.where(CreditCheck.id < before)
    query = query.order_by(CreditCheck.id.desc()).limit(limit + 1)
    return [StoredCheck(*row) for row in session.execute(query)]
