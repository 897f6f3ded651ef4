"""Merchant and credit-record administration (``admin:data``).

Every change is kept: a record's current row carries its version, and each version
(who, when, why, the whole record) is appended to ``credit_record_history``, which
the database refuses to update or delete. Each change records its audit event in
the same transaction, with ``before``/``after`` (personal data masked).
"""

from __future__ import annotations

from datetime import date

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from audit.context import RequestAudit
from audit.recorder import record_in_session
from schemas.merchants import (
    MerchantOut,
    MerchantPut,
    RecordCreate,
    RecordDetail,
    RecordHistoryOut,
    RecordOut,
    RecordPatch,
)
from schemas.uscc import USCCError, normalize_uscc, uscc_problem_reason
from service.crypto import KeyRing
from service.db.base import utcnow
from service.ids import new_id
from service.merchants import repository as repo
from service.merchants.rows import (
    RecordState,
    check_code,
    codec_for,
    describe_merchant,
    merchant_state,
    record_state,
    snapshot,
)
from service.merchants.transitions import allowed_next, is_allowed
from service.models import CreditRecord, Merchant, RecordHistory
from service.problems import ProblemError

UNKNOWN_MERCHANT = "Unknown merchant: the registry holds no merchant with this code"


def _invalid_uscc(exc: USCCError) -> ProblemError:
    return ProblemError("invalid-uscc", extra={"reason": exc.reason})


def _merchant_out(row: Merchant, records: list[CreditRecord]) -> MerchantOut:
    return MerchantOut(
        uscc=row.uscc,
        name=row.name,
        entity_type=row.entity_type,
        registration_status=row.registration_status,
        registered_on=row.registered_on,
        legal_representative=row.legal_representative_masked,
        owner_id_number=row.owner_id_masked,
        address=row.address,
        legacy_code=row.legacy_code,
        org_code_warning=row.org_code_warning,
        created_at=row.created_at,
        updated_at=row.updated_at,
        data_updated_at=row.data_updated_at,
        records=[RecordOut.model_validate(r) for r in records],
    )


def _merchant_columns(row: Merchant) -> dict[str, object]:
    return {c.key: getattr(row, c.key) for c in Merchant.__table__.columns}


# ---- merchants ---------------------------------------------------------------------------
def put_merchant(
    session: Session, ctx: RequestAudit, keyring: KeyRing, raw_uscc: str, body: MerchantPut
) -> tuple[MerchantOut, bool]:
    """Create or replace a merchant; returns it and whether it was created.

    A code failing only its check character is accepted when the body says
    ``legacy_code: true`` or the registry already holds it as a legacy code.
    """
    try:
        checked = check_code(raw_uscc)
    except USCCError as exc:
        raise _invalid_uscc(exc) from None
    code = checked.code
    if body.uscc is not None and normalize_uscc(body.uscc) != code:
        raise ProblemError(
            "validation-failed", errors=[("uscc", "Must be the code in the path, or left out")]
        )
    ctx.target_type, ctx.target_id, ctx.uscc = "merchant", code, code
    row = repo.get_merchant(session, code, for_update=True)
    if checked.checksum_failed and not (body.legacy_code or (row is not None and row.legacy_code)):
        raise _invalid_uscc(USCCError("checksum"))

    codec = codec_for(keyring)
    state = merchant_state(body, legacy=checked.checksum_failed)
    digest = codec.digest(code, state)
    now = utcnow()
    created = row is None
    if row is None:
        values = codec.values(code, state, digest=digest, now=now)
        row = Merchant(created_at=now, **values)
        session.add(row)
        try:
            session.flush()
        except IntegrityError:  # created concurrently by another request
            raise ProblemError("conflict") from None
        ctx.details["after"] = describe_merchant(values)
    else:
        before = describe_merchant(_merchant_columns(row))
        ctx.details["before"] = before
        if codec.stored_digest(_merchant_columns(row)) == digest:
            ctx.details["unchanged"] = True
        else:
            for key, value in codec.values(code, state, digest=digest, now=now).items():
                setattr(row, key, value)
            session.flush()
        ctx.details["after"] = describe_merchant(_merchant_columns(row))
    record_in_session(session, ctx, 201 if created else 200)
    return _merchant_out(row, repo.records_of(session, code)), created


def get_merchant(session: Session, ctx: RequestAudit, raw_uscc: str) -> MerchantOut:
    """A merchant with its records; a code the registry holds is found even if it is legacy."""
    code = normalize_uscc(raw_uscc)
    row = repo.get_merchant(session, code) if len(code) == 18 else None
    if row is None:
        reason = uscc_problem_reason(code)
        if reason is not None:
            raise _invalid_uscc(USCCError(reason))
        raise ProblemError("merchant-not-found")
    ctx.target_type, ctx.target_id, ctx.uscc = "merchant", code, code
    return _merchant_out(row, repo.records_of(session, code))


# ---- records -----------------------------------------------------------------------------
def _record_state(row: CreditRecord) -> RecordState:
    return RecordState(
        uscc=row.uscc,
        category=row.category,
        severity=row.severity,
        status=row.status,
        authority=row.authority,
        document_no=row.document_no,
        decided_on=row.decided_on,
        publicity_until=row.publicity_until,
        summary=row.summary,
    )


def _detail(session: Session, row: CreditRecord) -> RecordDetail:
    history = [RecordHistoryOut.model_validate(h) for h in repo.history_of(session, row.id)]
    return RecordDetail(**RecordOut.model_validate(row).model_dump(), history=history)


def _append_history(
    session: Session,
    row: CreditRecord,
    *,
    actor: str,
    change: str,
    reason: str | None,
) -> None:
    session.add(
        RecordHistory(
            record_id=row.id,
            version=row.version,
            changed_at=row.updated_at,
            changed_by=actor,
            change=change,
            reason=reason,
            snapshot=snapshot(row.source, row.source_record_id, _record_state(row)),
        )
    )


def create_record(
    session: Session, ctx: RequestAudit, actor: str, body: RecordCreate
) -> tuple[RecordOut, bool]:
    """Add a record; returns it and whether it was created.

    Idempotent on ``(source, source_record_id)``: the same record again is the stored
    one (not created), different content under the same key is a conflict (PATCH it).
    """
    code = normalize_uscc(body.uscc)
    merchant = repo.get_merchant(session, code) if len(code) == 18 else None
    if merchant is None:
        reason = uscc_problem_reason(code)
        if reason is not None:
            raise _invalid_uscc(USCCError(reason))
        raise ProblemError("validation-failed", errors=[("uscc", UNKNOWN_MERCHANT)])
    ctx.uscc = code
    state = record_state(body, code)
    existing = repo.record_by_source(session, body.source, body.source_record_id)
    if existing is not None:
        return _replayed(session, ctx, existing, state), False

    now = utcnow()
    row = CreditRecord(
        id=new_id("rec"),
        source=body.source,
        source_record_id=body.source_record_id,
        version=1,
        created_at=now,
        updated_at=now,
        **state._asdict(),
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:  # the same key, created concurrently: retrying gets a clear answer
        raise ProblemError("conflict") from None
    _append_history(session, row, actor=actor, change="create", reason=None)
    merchant.data_updated_at = now
    session.flush()
    ctx.target_type, ctx.target_id = "credit_record", row.id
    ctx.details["after"] = snapshot(row.source, row.source_record_id, state)
    record_in_session(session, ctx, 201)
    return RecordOut.model_validate(row), True


def _replayed(
    session: Session, ctx: RequestAudit, existing: CreditRecord, state: RecordState
) -> RecordOut:
    ctx.target_type, ctx.target_id = "credit_record", existing.id
    if _record_state(existing) != state:
        raise ProblemError(
            "conflict",
            detail_en="A record with this source and source_record_id exists with other "
            "content; change it with PATCH /v1/admin/records/{id}.",
            detail_zh="已存在相同来源和来源记录编号但内容不同的记录；请用 PATCH /v1/admin/records/{id} 修改。",
            extra={"record_id": existing.id},
        )
    ctx.details["unchanged"] = True
    record_in_session(session, ctx, 200)
    return RecordOut.model_validate(existing)


def get_record(session: Session, ctx: RequestAudit, record_id: str) -> RecordDetail:
    row = repo.get_record(session, record_id)
    if row is None:
        raise ProblemError("not-found")
    ctx.target_type, ctx.target_id, ctx.uscc = "credit_record", row.id, row.uscc
    return _detail(session, row)


def patch_record(
    session: Session, ctx: RequestAudit, actor: str, record_id: str, patch: RecordPatch
) -> RecordDetail:
    """Change a record's status (with a reason) and/or correct its fields; one new version."""
    row = repo.get_record(session, record_id, for_update=True)
    if row is None:
        raise ProblemError("not-found")
    ctx.target_type, ctx.target_id, ctx.uscc = "credit_record", row.id, row.uscc
    before = _record_state(row)
    changes = {name: getattr(patch, name) for name in patch.model_fields_set - {"reason"}}
    for name in ("status", "category", "severity"):
        if changes.get(name) is not None:
            changes[name] = changes[name].value
    after = before._replace(**changes)

    status_changed = after.status != before.status
    if status_changed:
        if not is_allowed(before.status, after.status):
            raise ProblemError(
                "conflict",
                detail_en="This status change is not allowed for the record's current status.",
                detail_zh="记录当前状态不允许变更为该状态。",
                extra={"current_status": before.status, "allowed": allowed_next(before.status)},
            )
        if patch.reason is None:
            raise ProblemError(
                "validation-failed", errors=[("reason", "Required when the status changes")]
            )
    _check_dates(after.decided_on, after.publicity_until)
    ctx.details["before"] = snapshot(row.source, row.source_record_id, before)
    if after == before:
        ctx.details["unchanged"] = True
        record_in_session(session, ctx, 200)
        return _detail(session, row)

    now = utcnow()
    for name, value in changes.items():
        setattr(row, name, value)
    row.version = row.version + 1
    row.updated_at = now
    try:
        session.flush()
        _append_history(
            session,
            row,
            actor=actor,
            change="status_change" if status_changed else "correction",
            reason=patch.reason,
        )
        session.flush()
    except IntegrityError:  # the same version written concurrently
        raise ProblemError("conflict") from None
    repo.touch_merchants(session, {row.uscc}, now)
    ctx.details["after"] = snapshot(row.source, row.source_record_id, after)
    ctx.details["version"] = row.version
    ctx.details["reason_given"] = patch.reason is not None
    record_in_session(session, ctx, 200)
    return _detail(session, row)


def _check_dates(decided_on: date, publicity_until: date | None) -> None:
    if publicity_until is not None and publicity_until < decided_on:
        raise ProblemError(
            "validation-failed",
            errors=[("publicity_until", "Must not be before decided_on")],
        )
