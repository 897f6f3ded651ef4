"""All SQL on merchants, credit records and record history.

Bulk functions take and return plain mappings: the importer writes thousands of
rows per transaction with Core ``executemany`` rather than one ORM object at a time.
History is append-only (the database refuses UPDATE and DELETE on it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import (
    ARRAY,
    JSON,
    ColumnElement,
    String,
    Table,
    any_,
    bindparam,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.orm import Session

from service.models import CreditRecord, Merchant, RecordHistory

RecordKey = tuple[str, str]
"""``(source, source_record_id)``: how a source identifies its record."""

_MERCHANTS = cast(Table, Merchant.__table__)
_RECORDS = cast(Table, CreditRecord.__table__)
_HISTORY = cast(Table, RecordHistory.__table__)


# ---- single rows (admin routes) ----------------------------------------------------------
def get_merchant(session: Session, uscc: str, *, for_update: bool = False) -> Merchant | None:
    if len(uscc) > 18:
        return None
    query = select(Merchant).where(Merchant.uscc == uscc)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def records_of(session: Session, uscc: str) -> list[CreditRecord]:
    query = (
        select(CreditRecord)
        .where(CreditRecord.uscc == uscc)
        .order_by(CreditRecord.decided_on.desc(), CreditRecord.id.desc())
    )
    return list(session.scalars(query).all())


def get_record(
    session: Session, record_id: str, *, for_update: bool = False
) -> CreditRecord | None:
    if len(record_id) > 40:
        return None
    query = select(CreditRecord).where(CreditRecord.id == record_id)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def record_by_source(session: Session, source: str, source_record_id: str) -> CreditRecord | None:
    query = select(CreditRecord).where(
        CreditRecord.source == source, CreditRecord.source_record_id == source_record_id
    )
    return session.scalars(query).one_or_none()


def history_of(session: Session, record_id: str) -> list[RecordHistory]:
    query = (
        select(RecordHistory)
        .where(RecordHistory.record_id == record_id)
        .order_by(RecordHistory.version)
    )
    return list(session.scalars(query).all())


def any_merchant(session: Session) -> bool:
    return bool(session.scalar(select(exists().where(Merchant.uscc.is_not(None)))))


# ---- bulk reads (importer) ---------------------------------------------------------------
def _one_of(
    session: Session, column: ColumnElement[str], values: Collection[str]
) -> ColumnElement[bool]:
    """``column IN values`` with the values as one bound parameter, however many there are.

    A plain ``IN`` renders one parameter per value, and compiling a thousand of them
    per batch costs more than running the query.
    """
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(String)))
    if name == "sqlite":
        packed = bindparam(None, orjson.dumps(list(values)).decode(), type_=String)
        each = func.json_each(packed).table_valued("value")
        return column.in_(select(each.c.value))
    return column.in_(list(values))


def merchant_rows(session: Session, usccs: Collection[str]) -> dict[str, RowMapping]:
    """The stored rows of those merchants that exist, by code."""
    if not usccs:
        return {}
    query = select(_MERCHANTS).where(_one_of(session, _MERCHANTS.c.uscc, usccs))
    return {row["uscc"]: row for row in session.execute(query).mappings()}


def existing_usccs(session: Session, usccs: Collection[str]) -> set[str]:
    if not usccs:
        return set()
    query = select(_MERCHANTS.c.uscc).where(_one_of(session, _MERCHANTS.c.uscc, usccs))
    return set(session.scalars(query).all())


def record_rows(session: Session, keys: Iterable[RecordKey]) -> dict[RecordKey, RowMapping]:
    """The stored records among ``keys``; one query per source, so the unique index serves it."""
    by_source: dict[str, list[str]] = defaultdict(list)
    for source, source_record_id in keys:
        by_source[source].append(source_record_id)
    found: dict[RecordKey, RowMapping] = {}
    for source, ids in by_source.items():
        query = select(_RECORDS).where(
            _RECORDS.c.source == source, _one_of(session, _RECORDS.c.source_record_id, ids)
        )
        for row in session.execute(query).mappings():
            found[(row["source"], row["source_record_id"])] = row
    return found


# ---- bulk writes (importer) --------------------------------------------------------------
def _bulk_insert(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT all ``rows`` (same keys each) with one DBAPI ``executemany``.

    SQLAlchemy would run every value of every row through its column type's bind
    processor one by one, which dominates the cost of a large import. Here values are
    converted column by column, each distinct value once (a batch shares one timestamp,
    and dates repeat). The statement, its bind casts and the processors are still
    SQLAlchemy's own, so the stored values read back exactly as the ORM's would.
    """
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    compiled = insert(table).compile(dialect=dialect, column_keys=list(rows[0]))
    names = list(compiled.positiontup or ()) if compiled.positional else list(rows[0])
    columns: list[list[Any]] = []
    for name in names:
        values = [row[name] for row in rows]
        column_type = table.c[name].type
        if isinstance(column_type, JSON):
            # orjson instead of the dialect's json.dumps: same JSON, several times faster.
            values = [None if v is None else orjson.dumps(v).decode() for v in values]
        else:
            process = column_type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                values = _convert(values, process)
        columns.append(values)
    if compiled.positional:
        params: list[Any] = list(zip(*columns, strict=True))
    else:
        params = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
    connection.exec_driver_sql(compiled.string, params)


def _convert(values: list[Any], process: Any) -> list[Any]:
    """Apply a bind processor, once per distinct hashable value."""
    done: dict[Any, Any] = {}
    out: list[Any] = []
    for value in values:
        if value is None:
            out.append(None)
        elif isinstance(value, dict | list):
            out.append(process(value))
        else:
            converted = done.get(value, _MISSING)
            if converted is _MISSING:
                converted = done[value] = process(value)
            out.append(converted)
    return out


_MISSING = object()


def insert_merchants(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    _bulk_insert(session, _MERCHANTS, rows)


def update_merchants(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Replace merchants by primary key (``uscc``); every row has the same keys."""
    if rows:
        session.execute(update(Merchant), list(rows))


def insert_records(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    _bulk_insert(session, _RECORDS, rows)


def update_records(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Replace records by primary key (``id``); every row has the same keys."""
    if rows:
        session.execute(update(CreditRecord), list(rows))


def insert_history(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    _bulk_insert(session, _HISTORY, rows)


def touch_merchants(session: Session, usccs: Collection[str], now: datetime) -> None:
    """Mark merchants whose records changed: their ``data_updated_at`` is a check's data_as_of."""
    if usccs:
        session.execute(
            update(_MERCHANTS)
            .where(_MERCHANTS.c.uscc.in_(list(usccs)))
            .values(data_updated_at=now)
            .execution_options(synchronize_session=False)
        )
