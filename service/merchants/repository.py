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

from sqlalchemy import Table, exists, insert, select, update
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
def merchant_rows(session: Session, usccs: Collection[str]) -> dict[str, RowMapping]:
    """The stored rows of those merchants that exist, by code."""
    if not usccs:
        return {}
    query = select(_MERCHANTS).where(_MERCHANTS.c.uscc.in_(list(usccs)))
    return {row["uscc"]: row for row in session.execute(query).mappings()}


def existing_usccs(session: Session, usccs: Collection[str]) -> set[str]:
    if not usccs:
        return set()
    query = select(_MERCHANTS.c.uscc).where(_MERCHANTS.c.uscc.in_(list(usccs)))
    return set(session.scalars(query).all())


def record_rows(session: Session, keys: Iterable[RecordKey]) -> dict[RecordKey, RowMapping]:
    """The stored records among ``keys``; one query per source, so the unique index serves it."""
    by_source: dict[str, list[str]] = defaultdict(list)
    for source, source_record_id in keys:
        by_source[source].append(source_record_id)
    found: dict[RecordKey, RowMapping] = {}
    for source, ids in by_source.items():
        query = select(_RECORDS).where(
            _RECORDS.c.source == source, _RECORDS.c.source_record_id.in_(ids)
        )
        for row in session.execute(query).mappings():
            found[(row["source"], row["source_record_id"])] = row
    return found


# ---- bulk writes (importer) --------------------------------------------------------------
def _bulk_insert(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT all ``rows`` (same keys each) with one DBAPI ``executemany``.

    SQLAlchemy would run each value of each row through its column type's bind
    processor, which dominates the cost of a large import. Here each column's processor
    runs once per distinct value object instead: a batch shares one timestamp object,
    and dates and codes repeat. The statement, its bind casts and the processors are
    still SQLAlchemy's own, so the stored values are exactly what the ORM would write.
    """
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    keys = list(rows[0])
    compiled = insert(table).compile(dialect=dialect, column_keys=keys)
    processors = [(key, table.c[key].type.bind_processor(dialect)) for key in keys]
    converted: list[dict[str, Any]] = []
    memo: dict[str, tuple[object, object]] = {}
    for row in rows:
        out: dict[str, Any] = {}
        for key, process in processors:
            value = row[key]
            if process is not None and value is not None:
                last = memo.get(key)
                if last is not None and last[0] is value:
                    value = last[1]
                else:
                    processed = process(value)
                    memo[key] = (value, processed)
                    value = processed
            out[key] = value
        converted.append(out)
    if compiled.positional:
        order = list(compiled.positiontup or ())
        params: list[Any] = [tuple(r[name] for name in order) for r in converted]
    else:
        params = converted
    connection.exec_driver_sql(compiled.string, params)


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
