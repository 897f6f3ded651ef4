"""``/v1/audit``: read, export and verify the audit trail; the access log and usage statistics.

Every route needs the ``audit:read`` scope and is itself audited like any other
request (by the middleware: these routes change nothing).
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import StreamingResponse

from audit import queries
from audit.queries import AuditTrail, EventFilters
from auth.dependencies import AuditReadAccess
from schemas.audit import (
    AccessLogEntry,
    AuditEventDetail,
    AuditEventOut,
    AuditStats,
    CheckpointOut,
    ConsistencyProofOut,
    Rfc3339,
    VerifyRequest,
    VerifyResultOut,
)
from schemas.common import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, NO_CONTROL_CHARACTERS, Page
from schemas.enums import Outcome
from schemas.uscc import USCCError, normalize_uscc, validate_uscc
from service.db.session import SessionDep
from service.openapi_docs import STANDARD, problems
from service.problems import ProblemError
from service.state import state_singleton

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=problems(*STANDARD))

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size (default 50)")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=200, pattern=NO_CONTROL_CHARACTERS, description="next_cursor of the last page"
    ),
]
ClientIdFilter = Annotated[
    str | None, Query(max_length=64, pattern=NO_CONTROL_CHARACTERS, description="Acting client")
]
ActionFilter = Annotated[
    str | None,
    Query(
        max_length=64,
        pattern=NO_CONTROL_CHARACTERS,
        description="Exact action, or a prefix ending in `.*` (credit_check.*)",
    ),
]
UsccFilter = Annotated[
    str | None, Query(max_length=64, pattern=NO_CONTROL_CHARACTERS, description="Merchant USCC")
]
OutcomeFilter = Annotated[Outcome | None, Query(description="success, denied or error")]
Since = Annotated[Rfc3339 | None, Query(description="Occurred at or after (RFC 3339)")]
Until = Annotated[Rfc3339 | None, Query(description="Occurred before (RFC 3339)")]
RequestIdFilter = Annotated[
    str | None, Query(max_length=128, pattern=NO_CONTROL_CHARACTERS, description="X-Request-ID")
]
UsccPath = Annotated[str, Path(min_length=1, max_length=64, pattern=NO_CONTROL_CHARACTERS)]


def _trail(request: Request) -> AuditTrail:
    state = request.app.state
    return state_singleton(
        state,
        "audit_trail",
        lambda: AuditTrail.for_public_url(
            state.sessionmaker, state.key_store, state.settings.public_url
        ),
    )


def _filters(
    client_id: str | None,
    action: str | None,
    uscc: str | None,
    outcome: Outcome | None,
    since: datetime | None,
    until: datetime | None,
    request_id: str | None,
) -> EventFilters:
    return EventFilters(
        client_id=client_id,
        action=action,
        uscc=normalize_uscc(uscc) if uscc is not None else None,
        outcome=outcome.value if outcome is not None else None,
        since=since,
        until=until,
        request_id=request_id,
    )


def _note_filters(request: Request, filters: EventFilters) -> None:
    """Record what was searched for (the filters are the "why" of a compliance read)."""
    ctx = request.state.audit
    for key in ("client_id", "action", "uscc", "outcome", "request_id"):
        value = getattr(filters, key)
        if value is not None:
            ctx.details[key] = value
    for key in ("since", "until"):
        value = getattr(filters, key)
        if value is not None:
            ctx.details[key] = value.isoformat()


@router.get("/events", response_model=Page[AuditEventOut], name="audit.events.list")
def list_events(
    request: Request,
    session: SessionDep,
    principal: AuditReadAccess,
    client_id: ClientIdFilter = None,
    action: ActionFilter = None,
    uscc: UsccFilter = None,
    outcome: OutcomeFilter = None,
    since: Since = None,
    until: Until = None,
    request_id: RequestIdFilter = None,
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Audit events, newest first. `seq` is null until the event is sealed (within seconds)."""
    request.state.audit.action = "audit.events.list"
    filters = _filters(client_id, action, uscc, outcome, since, until, request_id)
    _note_filters(request, filters)
    items, next_cursor = queries.list_events(session, filters, limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": next_cursor}


@router.get(
    "/events/{event_id}",
    response_model=AuditEventDetail,
    name="audit.events.get",
    responses=problems(404),
)
def get_event(
    request: Request,
    session: SessionDep,
    principal: AuditReadAccess,
    event_id: Annotated[str, Path(min_length=1, max_length=40, pattern=NO_CONTROL_CHARACTERS)],
) -> dict[str, object]:
    """One event; once sealed, with its RFC 9162 inclusion proof against the latest checkpoint.

    To check it: drop `seq` and `inclusion_proof`, hash the canonical JSON of the
    rest (SHA-256 of 0x00 || bytes, see docs/audit.md), and run the audit path up
    to `root_hash`, the root signed in `signed_note`.
    """
    ctx = request.state.audit
    ctx.action = "audit.events.read"
    ctx.target_type, ctx.target_id = "audit_event", event_id
    return queries.get_event(session, _trail(request), event_id)


@router.get(
    "/export",
    name="audit.export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "NDJSON (one event per line) or CSV (header row, flattened fields)",
            "content": {"application/x-ndjson": {}, "text/csv": {}},
        }
    },
)
def export_events(
    request: Request,
    principal: AuditReadAccess,
    format: Annotated[Literal["ndjson", "csv"], Query(description="ndjson or csv")] = "ndjson",
    order: Annotated[
        Literal["newest", "oldest"], Query(description="newest first (default) or oldest first")
    ] = "newest",
    bom: Annotated[
        bool,
        Query(description="CSV: start with a UTF-8 byte order mark, for spreadsheet programs"),
    ] = False,
    client_id: ClientIdFilter = None,
    action: ActionFilter = None,
    uscc: UsccFilter = None,
    outcome: OutcomeFilter = None,
    since: Since = None,
    until: Until = None,
    request_id: RequestIdFilter = None,
) -> StreamingResponse:
    """Every matching event, streamed page by page (memory does not grow with the count).

    CSV: UTF-8 (with a byte order mark for spreadsheet programs if `bom=true`), one
    header row, `details` as JSON text; a
    cell that a spreadsheet would run as a formula (starting with `=`, `+`, `-`,
    `@`, tab or CR) is prefixed with an apostrophe, as is one starting with an
    apostrophe; an empty cell is null and a lone apostrophe the empty string.
    """
    ctx = request.state.audit
    ctx.action = "audit.export"
    filters = _filters(client_id, action, uscc, outcome, since, until, request_id)
    _note_filters(request, filters)
    ctx.details["format"] = format
    stream = queries.export_stream(
        _trail(request), filters, format, oldest_first=order == "oldest", byte_order_mark=bom
    )
    media = "application/x-ndjson" if format == "ndjson" else "text/csv; charset=utf-8"
    return StreamingResponse(
        stream,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="audit-events.{format}"'},
    )


@router.get("/checkpoints/latest", response_model=CheckpointOut, name="audit.checkpoints.latest")
def latest_checkpoint(
    request: Request, session: SessionDep, principal: AuditReadAccess
) -> dict[str, object]:
    """The newest signed tree head (C2SP checkpoint in a signed note) and the verifier keys."""
    request.state.audit.action = "audit.checkpoints.latest"
    return queries.latest_checkpoint(session, _trail(request))


@router.get(
    "/proofs/consistency",
    response_model=ConsistencyProofOut,
    name="audit.proofs.consistency",
)
def consistency_proof(
    request: Request,
    session: SessionDep,
    principal: AuditReadAccess,
    from_: Annotated[int, Query(alias="from", ge=1, description="Size of the older tree")],
    to: Annotated[
        int | None, Query(ge=1, description="Size of the newer tree (default: the latest)")
    ] = None,
) -> dict[str, object]:
    """RFC 9162 proof that the log of `from` events is a prefix of the log of `to` events."""
    ctx = request.state.audit
    ctx.action = "audit.proofs.consistency"
    ctx.details.update({"from": from_, "to": to})
    return queries.consistency(session, _trail(request), from_, to)


_VERIFYING = threading.Lock()
"""One verification at a time per API process: a whole log is seconds of CPU per million
events, and every other request of the process shares that CPU."""
VERIFY_RETRY_AFTER = "5"


@router.post("/verify", response_model=VerifyResultOut, name="audit.verify")
def verify(
    request: Request,
    session: SessionDep,
    principal: AuditReadAccess,
    body: Annotated[VerifyRequest | None, Body()] = None,
) -> dict[str, object]:
    """Recompute every leaf and root from the stored events and check every signed checkpoint.

    `ok` is false with the first bad `seq` when an event was altered, deleted,
    inserted or moved, or a checkpoint is not authentic. The whole log is read:
    on a large log, prefer `creditshare audit verify` (or a bundle) off-line. One
    verification runs at a time per API process; another one asked meanwhile is
    `503 service-unavailable` with `Retry-After`.
    """
    request_body = body or VerifyRequest()
    ctx = request.state.audit
    ctx.action = "audit.verify"
    trail = _trail(request)
    if not _VERIFYING.acquire(blocking=False):
        ctx.details["refused"] = "verification in progress"
        raise ProblemError("service-unavailable", headers={"Retry-After": VERIFY_RETRY_AFTER})
    try:
        result = queries.verify_database(
            session,
            trail.key_store,
            trail.default_origin,
            request_body.from_seq,
            request_body.to_seq,
        )
    finally:
        _VERIFYING.release()
    ctx.details.update(
        {
            "from_seq": request_body.from_seq,
            "to_seq": request_body.to_seq,
            "ok": result.ok,
            "first_bad_seq": result.first_bad_seq,
        }
    )
    return {
        "ok": result.ok,
        "checked": result.checked,
        "first_bad_seq": result.first_bad_seq,
        "problem": result.problem,
    }


@router.get(
    "/merchants/{uscc}/access-log",
    response_model=Page[AccessLogEntry],
    name="audit.merchants.access_log",
)
def access_log(
    request: Request,
    session: SessionDep,
    principal: AuditReadAccess,
    uscc: UsccPath,
    since: Since = None,
    until: Until = None,
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Who checked this merchant, when and why (purpose, verdict), newest first. An invalid
    code is `422 invalid-uscc` with the reason, unless the registry holds it as a legacy
    code (one failing only its check character)."""
    code = normalize_uscc(uscc)
    ctx = request.state.audit
    ctx.action = "audit.access_log"
    try:
        validate_uscc(code)
    except USCCError as exc:
        if exc.reason != "checksum" or not queries.holds_merchant(session, code):
            raise ProblemError("invalid-uscc", extra={"reason": exc.reason}) from None
    ctx.target_type, ctx.target_id = "merchant", code[:200]
    ctx.uscc = code[:18]
    items, next_cursor = queries.access_log(
        session, code, limit=limit, cursor=cursor, since=since, until=until
    )
    return {"items": items, "next_cursor": next_cursor}


@router.get("/stats", response_model=AuditStats, name="audit.stats")
def stats(
    request: Request,
    session: SessionDep,
    principal: AuditReadAccess,
    since: Since = None,
    until: Until = None,
    client_id: ClientIdFilter = None,
) -> dict[str, object]:
    """Credit checks per client, per day (Asia/Shanghai) and per verdict."""
    ctx = request.state.audit
    ctx.action = "audit.stats"
    _note_filters(request, EventFilters(client_id=client_id, since=since, until=until))
    return queries.stats(session, since=since, until=until, client_id=client_id)
