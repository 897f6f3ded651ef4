"""Reading the client's own checks back (issuing them: ``single.py`` and ``batch.py``)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from audit.context import RequestAudit
from audit.recorder import record_in_session
from auth.principal import Principal
from schemas.enums import Scope
from service.credit_checks import repository
from service.credit_checks.issuing import (
    CHECK_ID_PREFIX,
    TARGET_TYPE,
)
from service.credit_checks.stored import is_sealed, issued_bytes, visible_bytes
from service.crypto import KeyRing
from service.ids import looks_like_id
from service.pagination import decode_str_cursor, encode_cursor
from service.problems import ProblemError


def _as_visible(keyring: KeyRing, principal: Principal, stored: repository.StoredCheck) -> bytes:
    """A stored check as issued, within what ``principal``'s scopes may see
    (``stored.visible_bytes``)."""
    issued = issued_bytes(keyring, stored.body, check_id=stored.id, uscc=stored.uscc)
    return visible_bytes(
        issued,
        sealed=is_sealed(stored.body),
        may_unmask=principal.has(Scope.CREDIT_PII.value),
        may_see_records=principal.has(Scope.CREDIT_DETAIL.value),
    )


def get_check(
    session: Session, ctx: RequestAudit, keyring: KeyRing, principal: Principal, check_id: str
) -> bytes:
    """The client's own check as issued (within what the token may see); another client's
    is 404 like a missing one."""
    if not looks_like_id(check_id, CHECK_ID_PREFIX):
        raise ProblemError("not-found")
    stored = repository.get_for_client(session, principal.client_id, check_id)
    if stored is None:
        raise ProblemError("not-found")
    ctx.target_type, ctx.target_id = TARGET_TYPE, stored.id
    ctx.uscc, ctx.purpose = stored.uscc, stored.purpose
    body = _as_visible(keyring, principal, stored)
    record_in_session(session, ctx, 200)
    return body


def list_checks(
    session: Session,
    ctx: RequestAudit,
    keyring: KeyRing,
    principal: Principal,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[bytes], str | None]:
    """A page of the client's own checks, newest first, each as issued (within what the
    token may see)."""
    rows: Sequence[repository.StoredCheck] = repository.list_for_client(
        session, principal.client_id, limit=limit, before=decode_str_cursor(cursor)
    )
    more = len(rows) > limit
    rows = rows[:limit]
    bodies = [_as_visible(keyring, principal, r) for r in rows]
    ctx.details["count"] = len(bodies)
    record_in_session(session, ctx, 200)
    return bodies, encode_cursor(rows[-1].id) if more and rows else None
