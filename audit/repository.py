"""All SQL of the audit trail: events, the sealed log, checkpoints and the sequencer lease.

Rows are read as plain result rows (not ORM objects) where many are read at a
time: the sealer and the verifier go through millions of events. Functions only
execute statements; whoever calls them owns the transaction.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NamedTuple, TypeAlias

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    String,
    Table,
    TypeDecorator,
    bindparam,
    cast,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType

from audit.documents import format_timestamp, utc_text
from service.db.bulk_insert import BulkInsert
from service.models import AuditCheckpoint, AuditEvent, AuditLogEntry, Lease, Merchant

SEQUENCER_LOCK_KEY: Final = 0x6373_6175_6469_74  # "csaudit": the PostgreSQL advisory lock

EVENT_COLUMNS: Final = (
    AuditEvent.pk,
    AuditEvent.id,
    AuditEvent.occurred_at,
    AuditEvent.actor_client_id,
    AuditEvent.actor_name,
    AuditEvent.actor_kind,
    AuditEvent.action,
    AuditEvent.target_type,
    AuditEvent.target_id,
    AuditEvent.uscc,
    AuditEvent.purpose,
    AuditEvent.outcome,
    AuditEvent.status,
    AuditEvent.request_id,
    AuditEvent.ip,
    AuditEvent.details,
)

AnyRow: TypeAlias = Row[*tuple[Any, ...]]
AnySelect: TypeAlias = Select[*tuple[Any, ...]]

AUDIT_LOG_TABLE: Final = typing.cast(Table, AuditLogEntry.__table__)

_AS_STORED: Final = ("occurred_at", "details")
STORED_EVENT_COLUMNS: Final = tuple(
    type_coerce(column, NullType()).label(column.key) if column.key in _AS_STORED else column
    for column in EVENT_COLUMNS
)
"""``EVENT_COLUMNS`` with ``occurred_at`` and ``details`` as the driver returns them (no
result processing by SQLAlchemy): ``EventRecord`` converts them, once, the cheaper way."""

CHECK_ACTION_PREFIX: Final = "credit_check."
"""Every access to a merchant's credit data: checks, and reads of issued checks (access log)."""
CHECK_ACTION: Final = "credit_check.create"
"""A single check, or one item of a batch (each has its own event)."""
CHECK_STATUSES: Final = (200, 201, 404)
"""The attempts that are checks (stats): issued (201; 200 for a batch item) or of a merchant
the registry does not hold (404, counted like any other check). A refused attempt (invalid
code, purpose not allowed, rate limited, unavailable) is no check, as the quota counts."""


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _unsealed(after_pk: int = 0) -> ColumnElement[bool]:
    """No log entry for the event. The redundant bound on ``event_pk`` lets PostgreSQL
    read only the tail of the unique index instead of hashing the whole log."""
    return ~exists().where(
        AuditLogEntry.event_pk == AuditEvent.pk, AuditLogEntry.event_pk > after_pk
    )


# ---- the sequencer lease ------------------------------------------------------------------


def take_lease(session: Session, name: str, holder: str, until: datetime, now: datetime) -> bool:
    """Take or renew lease ``name`` for ``holder`` if it is free, expired or already ours.

    Runs in the caller's transaction; a concurrent first insert loses on the
    primary key and returns False.
    """
    result = session.execute(
        update(Lease)
        .where(Lease.name == name, (Lease.holder == holder) | (Lease.expires_at <= now))
        .values(holder=holder, expires_at=until)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) == 1:
        return True
    if session.scalar(select(Lease.name).where(Lease.name == name)) is not None:
        return False
    try:
        with session.begin_nested():
            session.execute(insert(Lease).values(name=name, holder=holder, expires_at=until))
    except IntegrityError:
        return False
    return True


def fence_lease(session: Session, name: str, holder: str, until: datetime, now: datetime) -> bool:
    """Extend our unexpired lease, locking its row until the transaction ends.

    The first statement of a sealing batch: if another holder took over in the
    meantime it matches nothing and the batch is abandoned, and while the batch
    runs the row lock (PostgreSQL) or the write lock (SQLite) keeps any other
    sequencer out.
    """
    result = session.execute(
        update(Lease)
        .where(Lease.name == name, Lease.holder == holder, Lease.expires_at > now)
        .values(expires_at=until)
        .execution_options(synchronize_session=False)
    )
    return getattr(result, "rowcount", 0) == 1


def release_lease(session: Session, name: str, holder: str, now: datetime) -> None:
    """Let the lease expire now, so a standby takes over without waiting."""
    session.execute(
        update(Lease)
        .where(Lease.name == name, Lease.holder == holder)
        .values(expires_at=now)
        .execution_options(synchronize_session=False)
    )


def lease_holder(session: Session, name: str) -> tuple[str, datetime] | None:
    row = session.execute(select(Lease.holder, Lease.expires_at).where(Lease.name == name)).first()
    return None if row is None else (row.holder, row.expires_at)


# ---- sealing ------------------------------------------------------------------------------


def lock_sequencer(session: Session) -> None:
    """Serialise sealing transactions: an advisory lock on PostgreSQL, the write lock on SQLite.

    On SQLite a write statement (even one that changes nothing) takes the
    database's write lock at once, so the reads that follow see the newest
    committed state and no other writer can slip in before the commit.
    """
    if _is_postgres(session):
        session.execute(select(func.pg_advisory_xact_lock(SEQUENCER_LOCK_KEY)))
    else:
        session.execute(text("UPDATE leases SET name = name WHERE 1 = 0"))


def latest_checkpoint(session: Session) -> AuditCheckpoint | None:
    return session.scalars(
        select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1)
    ).first()


def log_size(session: Session) -> int:
    """The highest sealed seq (0 for an empty log)."""
    return int(session.scalar(select(func.coalesce(func.max(AuditLogEntry.seq), 0))) or 0)


class EventRecord(NamedTuple):
    """An event as the sealer reads it: the values of ``EVENT_COLUMNS`` (the same names),
    but ``occurred_at`` is already the event time's text (``documents.format_timestamp``'s)
    and ``details`` is decoded exactly as the JSON column type decodes it.
    ``documents.stored_event_document`` makes its document."""

    pk: int
    id: str
    occurred_at: str
    actor_client_id: str | None
    actor_name: str | None
    actor_kind: str
    action: str
    target_type: str | None
    target_id: str | None
    uscc: str | None
    purpose: str | None
    outcome: str
    status: int
    request_id: str
    ip: str | None
    details: Any


def _event_time_text(dialect: Dialect) -> Callable[[Any], str]:
    """Stored ``occurred_at`` -> ``format_timestamp`` of what an ORM read would return.

    The ORM reads it with ``UTCDateTime``'s processing (the dialect's parse, then a
    naive value taken as UTC); here the parse is the same function, and a naive
    result -- the stored form on SQLite -- goes straight to ``utc_text``, skipping the
    ``replace(tzinfo=UTC)`` and ``strftime`` that cost a sixth of sealing an event. Any
    other value takes the ORM's full processing and ``format_timestamp``: the same text.
    """
    decorated = AuditEvent.occurred_at.type.dialect_impl(dialect)
    assert isinstance(decorated, TypeDecorator)
    full = decorated.result_processor(dialect, None)
    parse = decorated.impl_instance.result_processor(dialect, None)

    def event_time_text(stored: Any) -> str:
        value = stored if parse is None else parse(stored)
        if type(value) is datetime and value.tzinfo is None:
            return utc_text(value)
        return format_timestamp(typing.cast(datetime, stored if full is None else full(stored)))

    return event_time_text


def _details_decoder(dialect: Dialect) -> Callable[[Any], Any]:
    """Stored ``details`` -> what an ORM read returns: the JSON type's own result processor
    (``json.loads`` of the text on SQLite; psycopg has decoded it already on PostgreSQL)."""
    decode = AuditEvent.details.type.dialect_impl(dialect).result_processor(dialect, None)
    return _as_is if decode is None else decode


def _as_is(value: Any) -> Any:
    return value


def _records(session: Session, query: AnySelect) -> Iterator[EventRecord]:
    """Run ``query`` (``STORED_EVENT_COLUMNS``) on the session's connection -- a Core
    execution, without the ORM's per-row loading -- and fetch every row now; each is
    converted to an ``EventRecord`` only as the result is iterated, which may be after
    the session is closed. A consumer that drops each record once used keeps a batch's
    thousands from all being alive at once (for the garbage collector to walk)."""
    connection = session.connection()
    event_time = _event_time_text(connection.dialect)
    details = _details_decoder(connection.dialect)
    rows = connection.execute(query).all()
    # fmt: off
    return (
        EventRecord(pk, id_, event_time(at), client_id, name, kind, action, target_type,
                    target_id, uscc, purpose, outcome, status, request_id, ip, details(stored))
        for (pk, id_, at, client_id, name, kind, action, target_type,
             target_id, uscc, purpose, outcome, status, request_id, ip, stored) in rows
    )
    # fmt: on


def unsealed_events(session: Session, after_pk: int, limit: int) -> Iterator[EventRecord]:
    """Up to ``limit`` committed events without a log entry, in pk order, above ``after_pk``
    (read now, converted as iterated: see ``_records``)."""
    query = (
        select(*STORED_EVENT_COLUMNS)
        .where(AuditEvent.pk > after_pk, _unsealed(after_pk))
        .order_by(AuditEvent.pk)
        .limit(limit)
    )
    return _records(session, query)


def has_unsealed(session: Session, after_pk: int) -> bool:
    query = select(AuditEvent.pk).where(AuditEvent.pk > after_pk, _unsealed(after_pk)).limit(1)
    return session.scalar(query) is not None


def _unsealed_branches(
    columns: Sequence[Any], ranges: Sequence[tuple[int, int]], above: int, limit: int
) -> list[AnySelect]:
    """One ``ORDER BY pk LIMIT`` query per range of several pks, one for all the single pks
    (an ``IN`` list) and one for the tail above ``above``.

    Each is an index scan that stops after ``limit`` candidates, whatever the
    planner thinks of the other ranges (an ``OR`` of ranges under one ``ORDER BY
    pk LIMIT`` may be planned as a scan of everything in between).
    """
    singles = [lo for lo, hi in ranges if lo == hi]
    branches = [
        select(*columns).where(AuditEvent.pk >= lo, AuditEvent.pk <= hi, _unsealed(lo - 1))
        for lo, hi in ranges
        if lo < hi
    ]
    if singles:
        branches.append(
            select(*columns).where(AuditEvent.pk.in_(singles), _unsealed(min(singles) - 1))
        )
    branches.append(select(*columns).where(AuditEvent.pk > above, _unsealed(above)))
    return [branch.order_by(AuditEvent.pk).limit(limit) for branch in branches]


def _first_unsealed(
    columns: Sequence[Any], ranges: Sequence[tuple[int, int]], above: int, limit: int
) -> AnySelect:
    """The ``limit`` lowest unsealed events among ``ranges`` and above ``above``, in pk order."""
    branches = _unsealed_branches(columns, ranges, above, limit)
    if len(branches) == 1:
        return branches[0]
    union = union_all(*(select(branch.subquery()) for branch in branches)).subquery()
    return select(union).order_by(union.c.pk).limit(limit)


def unsealed_events_in(
    session: Session, ranges: Sequence[tuple[int, int]], above: int, limit: int
) -> Iterator[EventRecord]:
    """Up to ``limit`` committed events without a log entry, in pk order, whose pk lies in one
    of the inclusive ``ranges`` or above ``above`` (the sequencer's scan cursor: its gaps
    and its high mark). The same records as ``unsealed_events``."""
    return _records(session, _first_unsealed(STORED_EVENT_COLUMNS, ranges, above, limit))


def has_unsealed_in(session: Session, ranges: Sequence[tuple[int, int]], above: int) -> bool:
    """Is there an unsealed event in one of ``ranges`` or above ``above``?"""
    return session.execute(_first_unsealed((AuditEvent.pk,), ranges, above, 1)).first() is not None


def highest_sealed_pk(session: Session, after_pk: int) -> int:
    """The highest sealed event pk above ``after_pk`` (``after_pk`` when there is none)."""
    value = session.scalar(
        select(func.max(AuditLogEntry.event_pk)).where(AuditLogEntry.event_pk > after_pk)
    )
    return after_pk if value is None else int(value)


def unsealed_pk_ranges(session: Session, after_pk: int, up_to_pk: int) -> list[tuple[int, int]]:
    """The inclusive pk ranges in ``(after_pk, up_to_pk]`` that hold no sealed event, in order.

    They are the holes between consecutive sealed pks, found in the database
    (a window over the unique index on ``audit_log.event_pk``), so only the
    holes cross the wire, not every pk of the window.
    """
    pk = AuditLogEntry.event_pk
    listed = (
        select(pk.label("pk"), func.lag(pk).over(order_by=pk).label("prev"))
        .where(pk > after_pk, pk <= up_to_pk)
        .subquery()
    )
    holes = (
        select(listed.c.prev, listed.c.pk)
        .where(listed.c.pk - func.coalesce(listed.c.prev, after_pk) > 1)
        .order_by(listed.c.pk)
    )
    return [
        ((after_pk if prev is None else int(prev)) + 1, int(nxt) - 1)
        for prev, nxt in session.execute(holes)
    ]


_SEALED_AMONG: Final = select(AuditLogEntry.event_pk).where(
    AuditLogEntry.event_pk.in_(bindparam("pks", expanding=True, literal_execute=True))
)
"""The pks rendered as literals: a batch's thousands would pass SQLite's bound-parameter
limit (999 before 3.32)."""
MAX_PK_RUNS: Final = 16
"""Up to this many runs of consecutive pks, ``sealed_among`` asks by range."""


def sealed_among(session: Session, pks: Sequence[int]) -> set[int]:
    """Which of ``pks`` (ascending) have a log entry, in one statement.

    A batch's candidates are usually one run of consecutive pks (the tail above the
    cursor's ``high``), a few more with the cursor's gaps: then one ``BETWEEN`` per run,
    a range probe of the unique index that can only find pks of the run. Otherwise the
    pks as an ``IN`` list (rendered value by value: slower, but rare).
    """
    if not pks:
        return set()
    runs = _runs(pks)
    if len(runs) <= MAX_PK_RUNS:
        pk = AuditLogEntry.event_pk
        query = select(pk).where(or_(*(pk.between(lo, hi) for lo, hi in runs)))
        rows = session.connection().execute(query)
    else:
        rows = session.connection().execute(_SEALED_AMONG, {"pks": list(pks)})
    return set(rows.scalars())


def _runs(pks: Sequence[int]) -> list[tuple[int, int]]:
    """The runs of consecutive values in ascending ``pks``, as inclusive ``(lo, hi)``."""
    runs: list[tuple[int, int]] = []
    lo = prev = pks[0]
    for pk in pks[1:]:
        if pk != prev + 1:
            runs.append((lo, prev))
            lo = pk
        prev = pk
    runs.append((lo, prev))
    return runs


_LOG_ROWS: Final = BulkInsert(AUDIT_LOG_TABLE, ("seq", "event_pk", "leaf_hash", "sealed_at"))


def insert_entries(
    session: Session,
    first_seq: int,
    event_pks: Sequence[int],
    leaf_hashes: Sequence[str],
    sealed_at: datetime,
) -> None:
    """Append log entries: seq ``first_seq + i`` for ``event_pks[i]``, whose leaf hash (hex) is
    ``leaf_hashes[i]``, all sealed at ``sealed_at``, in one statement (``BulkInsert``: an
    executemany on SQLite, one statement of JSON rows on PostgreSQL; its errors are
    SQLAlchemy's)."""
    seqs = range(first_seq, first_seq + len(event_pks))
    rows = [
        {"seq": seq, "event_pk": pk, "leaf_hash": leaf, "sealed_at": sealed_at}
        for seq, pk, leaf in zip(seqs, event_pks, leaf_hashes, strict=True)
    ]
    _LOG_ROWS.execute(session.connection(), rows)


def insert_checkpoint(
    session: Session,
    *,
    size: int,
    root_hash: str,
    frontier: list[str],
    note: str,
    key_id: str,
    created_at: datetime,
) -> None:
    session.execute(
        insert(AuditCheckpoint).values(
            size=size,
            root_hash=root_hash,
            frontier=frontier,
            note=note,
            key_id=key_id,
            created_at=created_at,
        )
    )


def lowest_unsealed_pk(session: Session, after_pk: int) -> int | None:
    return session.scalar(
        select(func.min(AuditEvent.pk)).where(AuditEvent.pk > after_pk, _unsealed(after_pk))
    )


def highest_settled_pk(
    session: Session, after_pk: int, below_pk: int | None, sealed_before: datetime
) -> int | None:
    """The highest pk above ``after_pk`` (and below ``below_pk``) of an event sealed before
    ``sealed_before``."""
    query = select(func.max(AuditLogEntry.event_pk)).where(
        AuditLogEntry.event_pk > after_pk, AuditLogEntry.sealed_at < sealed_before
    )
    if below_pk is not None:
        query = query.where(AuditLogEntry.event_pk < below_pk)
    return session.scalar(query)


def backlog(session: Session, after_pk: int) -> tuple[int, datetime | None]:
    """How many events above ``after_pk`` are unsealed, and when the oldest of them occurred."""
    row = session.execute(
        select(func.count(), func.min(AuditEvent.occurred_at)).where(
            AuditEvent.pk > after_pk, _unsealed(after_pk)
        )
    ).one()
    return int(row[0]), row[1]


# ---- reading events -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventFilters:
    """The filters of ``GET /v1/audit/events`` and of the export (all optional, ANDed).

    ``action`` matches exactly, or as a prefix when it ends in ``.*``
    (``credit_check.*``); ``since`` is inclusive, ``until`` exclusive.
    """

    client_id: str | None = None
    action: str | None = None
    uscc: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    request_id: str | None = None


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _apply_filters(query: AnySelect, filters: EventFilters) -> AnySelect:
    if filters.client_id is not None:
        query = query.where(AuditEvent.actor_client_id == filters.client_id)
    if filters.action is not None:
        if filters.action.endswith(".*"):
            query = query.where(
                AuditEvent.action.like(_like_prefix(filters.action[:-1]), escape="\\")
            )
        else:
            query = query.where(AuditEvent.action == filters.action)
    if filters.uscc is not None:
        query = query.where(AuditEvent.uscc == filters.uscc)
    if filters.outcome is not None:
        query = query.where(AuditEvent.outcome == filters.outcome)
    if filters.since is not None:
        query = query.where(AuditEvent.occurred_at >= filters.since)
    if filters.until is not None:
        query = query.where(AuditEvent.occurred_at < filters.until)
    if filters.request_id is not None:
        query = query.where(AuditEvent.request_id == filters.request_id)
    return query


def _with_seq() -> AnySelect:
    return select(*EVENT_COLUMNS, AuditLogEntry.seq).outerjoin(
        AuditLogEntry, AuditLogEntry.event_pk == AuditEvent.pk
    )


def list_events(
    session: Session,
    filters: EventFilters,
    *,
    limit: int,
    before_pk: int | None = None,
    after_pk: int | None = None,
    oldest_first: bool = False,
) -> Sequence[AnyRow]:
    """Events with their seq (null while unsealed), newest first unless ``oldest_first``."""
    query = _apply_filters(_with_seq(), filters)
    if before_pk is not None:
        query = query.where(AuditEvent.pk < before_pk)
    if after_pk is not None:
        query = query.where(AuditEvent.pk > after_pk)
    order = AuditEvent.pk.asc() if oldest_first else AuditEvent.pk.desc()
    return session.execute(query.order_by(order).limit(limit)).all()


def event_by_id(session: Session, event_id: str) -> AnyRow | None:
    return session.execute(_with_seq().where(AuditEvent.id == event_id)).first()


def access_log(
    session: Session,
    uscc: str,
    *,
    limit: int,
    before_pk: int | None,
    since: datetime | None,
    until: datetime | None,
) -> Sequence[AnyRow]:
    """Events of credit checks about ``uscc``, newest first (index ``uscc, pk``)."""
    filters = EventFilters(uscc=uscc, action=CHECK_ACTION_PREFIX + "*", since=since, until=until)
    return list_events(session, filters, limit=limit, before_pk=before_pk)


def _shanghai_day(session: Session) -> ColumnElement[str]:
    """The calendar day of ``occurred_at`` in Asia/Shanghai (UTC+8, no daylight saving since 1991)."""
    if _is_postgres(session):
        return func.to_char(
            func.timezone("Asia/Shanghai", AuditEvent.occurred_at), literal_column("'YYYY-MM-DD'")
        )
    return cast(func.date(AuditEvent.occurred_at, "+8 hours"), String)


def holds_merchant(session: Session, uscc: str) -> bool:
    """Whether the registry holds ``uscc`` (a code failing its check character is only
    a code at all if the registry holds it as a legacy code)."""
    found = session.scalar(select(Merchant.uscc).where(Merchant.uscc == uscc).limit(1))
    return found is not None


def check_stats(
    session: Session,
    *,
    since: datetime | None,
    until: datetime | None,
    client_id: str | None,
) -> Sequence[AnyRow]:
    """Rows ``(client_id, day, verdict, checks)``: credit checks grouped the three ways at once.

    A check is a ``credit_check.create`` event with one of ``CHECK_STATUSES`` (a single
    check or a batch item; not the batch request's own event, nor a read of an issued
    check); its verdict is ``details["verdict"]`` (null for a merchant not found).
    """
    day = _shanghai_day(session).label("day")
    verdict = AuditEvent.details["verdict"].as_string().label("verdict")
    query = select(AuditEvent.actor_client_id.label("client_id"), day, verdict, func.count())
    query = query.where(
        AuditEvent.action == CHECK_ACTION,
        AuditEvent.status.in_(CHECK_STATUSES),
    )
    query = _apply_filters(query, EventFilters(client_id=client_id, since=since, until=until))
    query = query.group_by(AuditEvent.actor_client_id, day, verdict)
    return session.execute(query).all()


# ---- the sealed log -----------------------------------------------------------------------


def leaf_hashes(session: Session, start: int, end: int) -> list[bytes]:
    """Stored leaf hashes of leaf indexes ``[start, end)`` (seq ``start + 1`` .. ``end``).

    Position ``i`` holds the leaf of seq ``start + i + 1``; a missing entry or a
    malformed stored hash is ``b""`` there, so positions never shift.
    """
    out = [b""] * (end - start)
    rows = session.execute(
        select(AuditLogEntry.seq, AuditLogEntry.leaf_hash).where(
            AuditLogEntry.seq > start, AuditLogEntry.seq <= end
        )
    ).all()
    for seq, value in rows:
        try:
            out[seq - start - 1] = bytes.fromhex(value)
        except (TypeError, ValueError):
            continue
    return out


def sealed_events(session: Session, first_seq: int, last_seq: int) -> Sequence[AnyRow]:
    """Sealed events with seq in ``[first_seq, last_seq]``, in seq order, with ``seq`` and
    the stored ``leaf_hash``."""
    query = (
        select(AuditLogEntry.seq, AuditLogEntry.leaf_hash, *EVENT_COLUMNS)
        .join(AuditEvent, AuditEvent.pk == AuditLogEntry.event_pk)
        .where(AuditLogEntry.seq >= first_seq, AuditLogEntry.seq <= last_seq)
        .order_by(AuditLogEntry.seq)
    )
    return session.execute(query).all()


def checkpoints(session: Session, *, up_to_size: int | None = None) -> Sequence[AnyRow]:
    """Every checkpoint by size: ``size, root_hash, note, key_id, created_at`` (not the
    frontier, which only the sealer needs: a long log has many checkpoints)."""
    query = select(
        AuditCheckpoint.size,
        AuditCheckpoint.root_hash,
        AuditCheckpoint.note,
        AuditCheckpoint.key_id,
        AuditCheckpoint.created_at,
    ).order_by(AuditCheckpoint.size)
    if up_to_size is not None:
        query = query.where(AuditCheckpoint.size <= up_to_size)
    return session.execute(query).all()


_INSERT_EVENTS = typing.cast(Table, AuditEvent.__table__).insert()


def insert_events(session: Session, rows: Sequence[typing.Mapping[str, object]]) -> None:
    """Insert audit events in one executemany on the session's connection.

    As ORM objects they would cost a unit-of-work flush, and on SQLite one statement per
    row (the ORM fetches each generated ``pk`` back); nobody needs those keys.
    """
    if rows:
        session.connection().execute(_INSERT_EVENTS, list(rows))
