"""All SQL for credit checks: the registry data a check reads, and stored checks.

A check reads its merchant and the merchant's counting records in ONE statement (the
merchant joined to its records by the ``uscc`` index), and a batch reads all of its
merchants and their records in one statement too (``WHERE uscc IN (...)``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Select, and_, insert, or_, select
from sqlalchemy.orm import Session

from service.models import AuditEvent, CreditCheck, CreditRecord, Merchant
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
    entity_type: str
    registration_status: str
    registered_on: date | None
    legal_representative_masked: str | None
    legal_representative_enc: str | None
    data_updated_at: datetime
    records: list[RecordData] = field(default_factory=list)


_MERCHANT_COLUMNS = (
    Merchant.uscc,
    Merchant.name,
    Merchant.entity_type,
    Merchant.registration_status,
    Merchant.registered_on,
    Merchant.legal_representative_masked,
    Merchant.legal_representative_enc,
    Merchant.data_updated_at,
)
_RECORD_COLUMNS = (
    CreditRecord.id,
    CreditRecord.category,
    CreditRecord.severity,
    CreditRecord.status,
    CreditRecord.authority,
    CreditRecord.document_no,
    CreditRecord.decided_on,
    CreditRecord.publicity_until,
    CreditRecord.summary,
)
_MERCHANT_WIDTH = len(_MERCHANT_COLUMNS)


def _subjects_query(where: ColumnElement[bool], today: date) -> Select[*tuple[Any, ...]]:
    # Only records that can count are fetched (the engine checks again: it is pure).
    counting = and_(
        CreditRecord.uscc == Merchant.uscc,
        CreditRecord.status.in_(sorted(COUNTING_STATUSES)),
        or_(CreditRecord.publicity_until.is_(None), CreditRecord.publicity_until >= today),
    )
    return (
        select(*_MERCHANT_COLUMNS, *_RECORD_COLUMNS).outerjoin(CreditRecord, counting).where(where)
    )


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


def load_subject(session: Session, uscc: str, today: date) -> Subject | None:
    rows = session.execute(_subjects_query(Merchant.uscc == uscc, today)).all()
    return _collect(rows).get(uscc)


def load_subjects(session: Session, codes: Collection[str], today: date) -> dict[str, Subject]:
    if not codes:
        return {}
    rows = session.execute(_subjects_query(Merchant.uscc.in_(sorted(codes)), today)).all()
    return _collect(rows)


def insert_checks(session: Session, rows: Sequence[Mapping[str, object]]) -> None:
    """Insert issued checks now, in one executemany (no RETURNING: the ids are ours)."""
    if rows:
        session.execute(insert(CreditCheck), list(rows))


_EVENT_COLUMNS = tuple(c.key for c in AuditEvent.__table__.columns if c.key != "pk")


def insert_events(session: Session, events: Sequence[AuditEvent]) -> None:
    """Insert audit events built by ``audit.recorder.build_event`` in one executemany.

    Added to the session instead, they would be inserted one statement per row on SQLite
    (the ORM fetches each generated ``pk`` back); nobody needs those keys here.
    """
    if events:
        rows = [{key: getattr(event, key) for key in _EVENT_COLUMNS} for event in events]
        session.execute(insert(AuditEvent), rows)


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
