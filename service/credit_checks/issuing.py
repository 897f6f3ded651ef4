"""Issuing one check: what every check (single or batch item) is made of.

Parse the code, decide with the cached policy, sign the receipt, serialise the document
once, and prepare the row that stores it; plus the request's audit event, written in
the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

import orjson

from auth.principal import Principal
from schemas.enums import Scope
from schemas.uscc import USCCError, USCCReason, normalize_uscc, validate_uscc
from service.credit_checks.document import (
    merchant_view,
    records_view,
    shows_personal_data,
    timestamp,
)
from service.credit_checks.receipt import ReceiptSigner, records_digest
from service.credit_checks.repository import Subject
from service.credit_checks.stored import store_form
from service.crypto import KeyRing
from service.ids import new_id
from service.policy.cache import PolicySnapshot
from service.policy.engine import evaluate, is_counting
from service.problems import ProblemError

ACTION_CREATE = "credit_check.create"
ACTION_BATCH = "credit_check.batch"
TARGET_TYPE = "credit_check"
CHECK_ID_PREFIX = "chk"
_DETAIL_SCOPE = Scope.CREDIT_DETAIL.value

Charge = Callable[[int], dict[str, str]]
"""Charges n checks to the client's rate plan: response headers, or a 429/503 problem."""


@dataclass(frozen=True, slots=True)
class Issuer:
    """What checks are issued with, besides the request: who asks, under which policy,
    signed with which key."""

    principal: Principal
    policy: PolicySnapshot
    signer: ReceiptSigner
    issuer: str
    keyring: KeyRing


@dataclass(frozen=True, slots=True)
class IssuedCheck:
    id: str
    row: dict[str, object]
    body: bytes
    verdict: str
    unmasked: bool


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


def require_purpose(principal: Principal, purpose: str) -> None:
    if purpose not in principal.purposes:
        raise ProblemError("purpose-not-allowed")


def issue(
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
) -> IssuedCheck:
    """Decide, sign and serialise one check (``created_at``: ``now`` as written)."""
    policy = issuer.policy
    decided, reasons = evaluate(policy.rules, subject.registration_status, subject.records, today)
    verdict = decided.value
    deciding = records_view([r for r in subject.records if is_counting(r, today)])
    check_id = new_id(CHECK_ID_PREFIX)
    client_id = issuer.principal.client_id
    receipt = issuer.signer.sign(
        {
            "iss": issuer.issuer,
            "sub": client_id,
            "iat": int(now.timestamp()),
            "check_id": check_id,
            "uscc": subject.uscc,
            "purpose": purpose,
            "verdict": verdict,
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
        "verdict": verdict,
        "reasons": reasons,
    }
    if issuer.principal.has(_DETAIL_SCOPE):
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
        "verdict": verdict,
        "policy_version": policy.version_label,
        "reference": reference,
        "consent_ref": consent_ref,
        "body": store_form(
            issuer.keyring, body, check_id=check_id, uscc=subject.uscc, sealed=unmask
        ),
    }
    return IssuedCheck(id=check_id, row=row, body=body, verdict=verdict, unmasked=unmask)
