"""Issuing credit checks, one or a batch, and reading the client's own checks back.

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

import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import orjson
from joserfc.jwk import ECKey
from sqlalchemy.orm import Session

from audit.context import RequestAudit
from audit.recorder import build_event, record_in_session
from auth.principal import Principal
from schemas.credit_checks import BatchCreate, CreditCheckCreate
from schemas.enums import Scope
from schemas.uscc import USCCError, USCCReason, normalize_uscc, validate_uscc
from service.credit_checks import repository
from service.credit_checks.document import (
    merchant_view,
    records_view,
    shows_personal_data,
    timestamp,
)
from service.credit_checks.receipt import records_digest, sign_receipt
from service.credit_checks.repository import Subject
from service.credit_checks.stored import issued_bytes, store_form
from service.crypto import KeyRing
from service.ids import looks_like_id, new_id
from service.pagination import decode_str_cursor, encode_cursor
from service.policy.cache import PolicySnapshot
from service.policy.engine import evaluate, is_counting, policy_day
from service.problems import ProblemError

ACTION_CREATE = "credit_check.create"
ACTION_BATCH = "credit_check.batch"
TARGET_TYPE = "credit_check"
CHECK_ID_PREFIX = "chk"
EVENT_ID_PREFIX = "evt"  # as audit.recorder.build_event names events

Charge = Callable[[int], dict[str, str]]
"""Charges n checks to the client's rate plan: response headers, or a 429/503 problem."""


@dataclass(frozen=True, slots=True)
class Issuer:
    """What checks are issued with, besides the request: who asks, under which policy,
    signed with which key."""

    principal: Principal
    policy: PolicySnapshot
    signer: ECKey
    issuer: str
    keyring: KeyRing
    charge: Charge


@dataclass(frozen=True, slots=True)
class Issued:
    check_id: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One batch item: a check (200), an unknown merchant (404) or a bad code (422)."""

    uscc: str
    status: int
    body: bytes | None = None
    problem: str | None = None
    problem_extra: dict[str, object] | None = None


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    results: list[ItemResult]
    headers: dict[str, str]


# ---- codes ---------------------------------------------------------------------------------


def parse_code(raw: str) -> tuple[str, USCCReason | None]:
    """The normalised code and why it is invalid (None: valid)."""
    code = normalize_uscc(raw)
    try:
        validate_uscc(code)
    except USCCError as exc:
        return code, exc.reason
    return code, None


def invalid_uscc(reason: USCCReason) -> ProblemError:
    return ProblemError("invalid-uscc", extra={"reason": reason})


def _require_purpose(principal: Principal, purpose: str) -> None:
    if purpose not in principal.purposes:
        raise ProblemError("purpose-not-allowed")


# ---- issuing ---------------------------------------------------------------------------------


def _record(session: Session, ctx: RequestAudit, status: int, *also: dict[str, object]) -> None:
    """``audit.recorder.record_in_session``, inserted with Core instead of an ORM flush.

    Same event (``build_event``), same transaction, same bookkeeping (``pending_event_id``,
    which the session dependency turns into ``recorded_event_id`` on commit); the ORM
    unit of work was a tenth of a check's CPU. ``also``: more events, same statement.
    """
    event = build_event(ctx, status)
    repository.insert_events(session, [*also, repository.event_row(event)])
    ctx.pending_event_id = event.id


@dataclass(frozen=True, slots=True)
class _Check:
    id: str
    row: dict[str, object]
    body: bytes
    verdict: str
    unmasked: bool


def _issue(
    issuer: Issuer,
    subject: Subject,
    *,
    purpose: str,
    reference: str | None,
    consent_ref: str | None,
    may_unmask: bool,
    now: datetime,
    today: date,
    created_at: str,
) -> _Check:
    """Decide, sign and serialise one check (``created_at``: ``now`` as written)."""
    policy = issuer.policy
    verdict, reasons = evaluate(policy.rules, subject.registration_status, subject.records, today)
    deciding = records_view([r for r in subject.records if is_counting(r, today)])
    check_id = new_id(CHECK_ID_PREFIX)
    client_id = issuer.principal.client_id
    receipt = sign_receipt(
        issuer.signer,
        {
            "iss": issuer.issuer,
            "sub": client_id,
            "iat": int(now.timestamp()),
            "check_id": check_id,
            "uscc": subject.uscc,
            "purpose": purpose,
            "verdict": verdict.value,
            "policy_version": policy.version_label,
            "records_digest": records_digest(deciding),
        },
    )
    unmask = shows_personal_data(subject, may_unmask=may_unmask)
    document: dict[str, object] = {
        "id": check_id,
        "created_at": created_at,
        "purpose": purpose,
        "reference": reference,
        "consent_ref": consent_ref,
        "merchant": merchant_view(subject, issuer.keyring, unmask=unmask),
        "verdict": verdict.value,
        "reasons": reasons,
    }
    if issuer.principal.has(Scope.CREDIT_DETAIL.value):
        document["records"] = deciding
    document["data_as_of"] = timestamp(subject.data_updated_at)
    document["policy_version"] = policy.version_label
    document["receipt"] = receipt
    body = orjson.dumps(document)
    row: dict[str, object] = {
        "id": check_id,
        "client_id": client_id,
        "created_at": now,
        "uscc": subject.uscc,
        "purpose": purpose,
        "verdict": verdict.value,
        "policy_version": policy.version_label,
        "reference": reference,
        "consent_ref": consent_ref,
        "body": store_form(
            issuer.keyring, body, check_id=check_id, uscc=subject.uscc, sealed=unmask
        ),
    }
    return _Check(id=check_id, row=row, body=body, verdict=verdict.value, unmasked=unmask)


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
    _require_purpose(issuer.principal, purpose)
    ctx.uscc = code
    # Unmasked personal data needs both the scope and the owner's consent reference; a
    # consent_ref without the scope is only stored.
    may_unmask = issuer.principal.has(Scope.CREDIT_PII.value) and data.consent_ref is not None
    headers = issuer.charge(1)
    if subject is None:
        subject = repository.load_subject(session, code, today)
    if subject is None:
        raise ProblemError("merchant-not-found", headers=headers)
    check = _issue(
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
    _record(session, ctx, 201)
    return Issued(check_id=check.id, body=check.body, headers=headers)


class _ItemEvents:
    """The events of batch items, shaped like a single check's so that every check of a
    merchant shows in its access log, whichever way it was made.

    ``build_event`` makes one template per status; each item's event is that template
    with its own id, ``uscc``, target and verdict (building 1000 ORM objects was a third
    of a batch's time).
    """

    def __init__(self, ctx: RequestAudit) -> None:
        self._ctx = ctx
        self._templates: dict[int, dict[str, object]] = {}
        self.rows: list[dict[str, object]] = []

    def _template(self, status: int, checked: bool) -> dict[str, object]:
        template = self._templates.get(status)
        if template is None:
            item = dataclasses.replace(
                self._ctx,
                action=ACTION_CREATE,
                uscc=None,
                target_type=TARGET_TYPE if checked else None,
                target_id=None,
                details={"batch": True},
                outcome=None,
                pending_event_id=None,
                recorded_event_id=None,
            )
            template = repository.event_row(build_event(item, status))
            self._templates[status] = template
        return template

    def add(self, uscc: str, status: int, check: _Check | None) -> None:
        row = dict(self._template(status, check is not None))
        row["id"] = new_id(EVENT_ID_PREFIX)
        row["uscc"] = uscc
        if check is not None:
            details = row["details"]
            assert isinstance(details, dict)
            row["target_id"] = check.id
            row["details"] = {**details, "verdict": check.verdict}
        self.rows.append(row)


def create_batch(
    session: Session, ctx: RequestAudit, issuer: Issuer, data: BatchCreate
) -> BatchOutcome:
    """Up to 1000 checks in one transaction, set-based (one query, bulk inserts).

    The purpose is checked once for the whole batch (403). Malformed codes become 422
    items and cost nothing; every other item costs one check of the quota, all or
    nothing (429 for the whole batch; see ``service.ratelimit.dependency`` for how a
    batch is charged to the burst bucket), unknown merchants included (404 items).

    Audit: the request leaves its own event (``credit_check.batch``, with counts), and
    every item that was checked (200 or 404) leaves one ``credit_check.create`` event
    with its ``uscc``, ``purpose`` and check id, exactly like a single check, so that a
    merchant's access log and the per-client statistics see batch checks too. They
    share the request's ``request_id``. Malformed items are counted in the request's
    event only: nothing was looked up.
    """
    now = datetime.now(UTC)
    today = policy_day(now)
    purpose = data.purpose.value
    _require_purpose(issuer.principal, purpose)
    parsed = [parse_code(item.uscc) for item in data.items]
    wanted = {code for code, reason in parsed if reason is None or reason == "checksum"}
    subjects = repository.load_subjects(session, wanted, today)
    valid = [
        reason is None or (reason == "checksum" and code in subjects) for code, reason in parsed
    ]
    cost = sum(valid)
    headers = issuer.charge(cost) if cost else {}

    created_at = timestamp(now)
    results: list[ItemResult] = []
    rows: list[dict[str, object]] = []
    events = _ItemEvents(ctx)
    verdicts: Counter[str] = Counter()
    for item, (code, reason), ok in zip(data.items, parsed, valid, strict=True):
        if not ok:
            assert reason is not None
            results.append(
                ItemResult(code, 422, problem="invalid-uscc", problem_extra={"reason": reason})
            )
            continue
        subject = subjects.get(code)
        if subject is None:
            results.append(ItemResult(code, 404, problem="merchant-not-found"))
            events.add(code, 404, None)
            continue
        check = _issue(
            issuer,
            subject,
            purpose=purpose,
            reference=item.reference,
            consent_ref=None,
            may_unmask=False,
            now=now,
            today=today,
            created_at=created_at,
        )
        rows.append(check.row)
        verdicts[check.verdict] += 1
        results.append(ItemResult(code, 200, body=check.body))
        events.add(code, 200, check)
    repository.insert_checks(session, rows)
    ctx.details.update(
        items=len(results),
        checked=len(rows),
        not_found=len(events.rows) - len(rows),
        invalid=len(results) - cost,
        verdicts=dict(verdicts),
    )
    _record(session, ctx, 200, *events.rows)
    return BatchOutcome(results=results, headers=headers)


# ---- reading ---------------------------------------------------------------------------------


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
