"""Writing audit events: inside the caller's transaction, or in one of their own.

Whatever path a request takes, exactly one event leaves it: services record in
their own transaction (so the action and its event commit or vanish together),
and the request middleware records everything else before the response starts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import cast

from sqlalchemy import Connection, Dialect, Table
from sqlalchemy.orm import Session

from audit.context import RequestAudit, outcome_for_status
from service.db.base import utcnow
from service.db.bulk_insert import BulkInsert, PreparedInsert
from service.ids import new_id
from service.models import AuditEvent

# Keys whose values must never reach the trail, whatever a caller puts in details.
_SECRET_MARKERS = ("secret", "token", "password", "assertion", "authorization", "private", "d")


@lru_cache(maxsize=1024)
def _is_secret(key: str) -> bool:
    """Whether a details key names a secret (the keys are few: the answer is cached)."""
    lowered = key.lower()
    return lowered == "d" or any(m in lowered for m in _SECRET_MARKERS if m != "d")


_PLAIN = (str, int, float, list, tuple, type(None))


def _scrub(details: Mapping[str, object]) -> dict[str, object]:
    clean: dict[str, object] = {}
    for key, value in details.items():
        if _is_secret(key):
            clean[key] = "[redacted]"
        elif isinstance(value, dict) or (
            # Mapping is an ABC, slow to test: the plain values details hold skip it.
            not isinstance(value, _PLAIN) and isinstance(value, Mapping)
        ):
            clean[key] = _scrub(value)
        else:
            clean[key] = value
    return clean


def event_values(
    ctx: RequestAudit, status: int, *, now: datetime | None = None
) -> dict[str, object]:
    """The column values of the request's event (what :func:`build_event` wraps; the hot
    paths insert these with Core, without an ORM object)."""
    return {
        "id": new_id("evt"),
        "occurred_at": now or utcnow(),
        "actor_client_id": ctx.actor_client_id,
        "actor_name": ctx.actor_name,
        "actor_kind": ctx.actor_kind,
        "action": ctx.action or f"http.{ctx.method.lower()}",
        "target_type": ctx.target_type,
        "target_id": ctx.target_id,
        "uscc": ctx.uscc,
        "purpose": ctx.purpose,
        "outcome": ctx.outcome or outcome_for_status(status),
        "status": status,
        "request_id": ctx.request_id,
        "ip": ctx.ip,
        "details": _scrub({"method": ctx.method, "path": ctx.path, **ctx.details}),
    }


_EVENTS_TABLE = cast(Table, AuditEvent.__table__)
EVENT_COLUMNS = tuple(column.name for column in _EVENTS_TABLE.columns if not column.primary_key)
"""What :func:`event_values` gives: every column but ``pk`` (the database's)."""
_INSERT_EVENTS = BulkInsert(_EVENTS_TABLE, EVENT_COLUMNS)


def insert_event_rows(connection: Connection, rows: Sequence[Mapping[str, object]]) -> None:
    """Insert :func:`event_values` rows in the connection's transaction, through the
    driver (``service.db.bulk_insert``)."""
    _INSERT_EVENTS.execute(connection, rows)


def prepare_event_rows(dialect: Dialect, rows: Sequence[Mapping[str, object]]) -> PreparedInsert:
    """:func:`insert_event_rows`, converted now and run later (``PreparedInsert.run``)."""
    return _INSERT_EVENTS.prepare(dialect, rows)


def build_event(ctx: RequestAudit, status: int, *, now: datetime | None = None) -> AuditEvent:
    return AuditEvent(**event_values(ctx, status, now=now))


def record_in_session(session: Session, ctx: RequestAudit, status: int) -> AuditEvent:
    """Add the request's event to ``session``; it counts once that session commits."""
    event = build_event(ctx, status)
    session.add(event)
    ctx.pending_event_id = event.id
    return event


def record_standalone(
    session_factory: Callable[[], Session], ctx: RequestAudit, status: int
) -> None:
    """Write the request's event in its own transaction (raises if it cannot)."""
    with session_factory() as session, session.begin():
        event = build_event(ctx, status)
        session.add(event)
    ctx.recorded_event_id = event.id


def record_rows_in_session(
    session: Session, ctx: RequestAudit, status: int, *also: dict[str, object]
) -> None:
    """:func:`record_in_session` for the hot path: the same event, the same transaction
    and bookkeeping, inserted with Core (the ORM flush was a tenth of a check's CPU).
    ``also``: further event rows (e.g. a batch's per-item events), same statement."""
    event = event_values(ctx, status)
    insert_event_rows(session.connection(), [*also, event])
    ctx.pending_event_id = str(event["id"])
