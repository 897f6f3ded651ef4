"""One credit check, and reading the client's own checks back.

Order of refusals for one check (each one before anything is charged, except the last):
code malformed (``422 invalid-uscc`` with ``reason``; a code failing only the check
character is looked up first, and found if the registry holds it as a legacy code),
purpose not allowed (403), rate limit or quota (429), merchant unknown (404, charged and
audited like any check).

A check reads its merchant and counting records in one query, evaluates the cached
policy, signs a receipt, and stores the check and its audit event in the caller's
transaction; the caller commits. The stored body is the response.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from audit.context import RequestAudit
from audit.recorder import record_in_session, record_rows_in_session
from schemas.credit_checks import CreditCheckCreate
from schemas.enums import Scope
from service.credit_checks import repository
from service.credit_checks.document import timestamp
from service.credit_checks.issuing import (
    CHECK_ID_PREFIX,
    TARGET_TYPE,
    Issuer,
    invalid_uscc,
    issue,
    parse_code,
    require_purpose,
)
from service.credit_checks.repository import Subject
from service.credit_checks.stored import issued_bytes
from service.crypto import KeyRing
from service.ids import looks_like_id
from service.pagination import decode_str_cursor, encode_cursor
from service.policy.engine import policy_day
from service.problems import ProblemError


@dataclass(frozen=True, slots=True)
class Issued:
    check_id: str
    body: bytes
    headers: dict[str, str]


def create_check(
    session: Session, ctx: RequestAudit, issuer: Issuer, data: CreditCheckCreate
) -> Issued:
    """One check; see the module docstring for the order of refusals."""
    now = datetime.now(UTC)
    today = policy_day(now)
    code, reason = parse_code(data.uscc)
    subject: Subject | None = None
    if reason == "checksum":
        # Legacy codes in authoritative data fail the check character: found, not refused.
        subject = repository.load_subject(session, code, today)
        if subject is None:
            raise invalid_uscc(reason)
    elif reason is not None:
        raise invalid_uscc(reason)
    purpose = data.purpose.value
    require_purpose(issuer.principal, purpose)
    ctx.uscc = code
    # Unmasked personal data needs both the scope and the owner's consent reference; a
    # consent_ref without the scope is only stored.
    may_unmask = issuer.principal.has(Scope.CREDIT_PII.value) and data.consent_ref is not None
    headers = issuer.charge(1)
    if subject is None:
        subject = repository.load_subject(session, code, today)
    if subject is None:
        raise ProblemError("merchant-not-found", headers=headers)
    check = issue(
        issuer,
        subject,
        purpose=purpose,
        reference=data.reference,
        consent_ref=data.consent_ref,
        may_unmask=may_unmask,
        now=now,
        today=today,
        created_at=timestamp(now),
    )
    repository.insert_checks(session, [check.row])
    ctx.target_type, ctx.target_id = TARGET_TYPE, check.id
    ctx.details["verdict"] = check.verdict
    if check.unmasked:
        ctx.details.update(personal_data="unmasked", consent_ref=data.consent_ref)
    record_rows_in_session(session, ctx, 201)
    return Issued(check_id=check.id, body=check.body, headers=headers)


def get_check(
    session: Session, ctx: RequestAudit, keyring: KeyRing, client_id: str, check_id: str
) -> bytes:
    """The client's own check as issued; another client's is 404 like a missing one."""
    if not looks_like_id(check_id, CHECK_ID_PREFIX):
        raise ProblemError("not-found")
    stored = repository.get_for_client(session, client_id, check_id)
    if stored is None:
        raise ProblemError("not-found")
    ctx.target_type, ctx.target_id = TARGET_TYPE, stored.id
    ctx.uscc, ctx.purpose = stored.uscc, stored.purpose
    body = issued_bytes(keyring, stored.body, check_id=stored.id, uscc=stored.uscc)
    record_in_session(session, ctx, 200)
    return body


def list_checks(
    session: Session,
    ctx: RequestAudit,
    keyring: KeyRing,
    client_id: str,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[bytes], str | None]:
    """A page of the client's own checks, newest first, each exactly as issued."""
    rows: Sequence[repository.StoredCheck] = repository.list_for_client(
        session, client_id, limit=limit, before=decode_str_cursor(cursor)
    )
    more = len(rows) > limit
    rows = rows[:limit]
    bodies = [issued_bytes(keyring, r.body, check_id=r.id, uscc=r.uscc) for r in rows]
    ctx.details["count"] = len(bodies)
    record_in_session(session, ctx, 200)
    return bodies, encode_cursor(rows[-1].id) if more and rows else None
