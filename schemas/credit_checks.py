"""Credit checks made by platforms: requests, the CreditCheck document, batches."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from schemas.common import CheckUSCCInput, Reference, StrictModel
from schemas.enums import (
    Category,
    EntityType,
    Purpose,
    RecordStatus,
    RegistrationStatus,
    Severity,
    Verdict,
)
from schemas.problems import Problem

MAX_BATCH_ITEMS = 1000
MAX_BATCH_BODY_BYTES = 4 * 1_048_576
"""A batch's body may be this long even where other bodies are held to less: its largest
valid form (1000 items, each code and reference as long as allowed, every character
JSON-escaped as a client's encoder may do it, six bytes each) fits."""

RECORDS_DIGEST_DESCRIPTION = (
    "Lower-case hex SHA-256 of the canonical JSON of the records that decided the verdict "
    "(the `records` of this check, whether or not the client may see them): a JSON array "
    "of the record objects sorted by `id`, each with exactly the members `id`, `category`, "
    "`severity`, `status`, `authority`, `document_no`, `decided_on`, `publicity_until` "
    "(dates as `YYYY-MM-DD`, `publicity_until` may be null) and `summary`; object members "
    "sorted by name, no insignificant whitespace, non-ASCII characters written as "
    "themselves (not `\\u` escapes), encoded as UTF-8. No records: the digest of `[]`."
)


class CreditCheckCreate(StrictModel):
    uscc: CheckUSCCInput = Field(
        description=(
            "Unified Social Credit Code; trimmed and upper-cased before validation. A "
            "malformed code (blank included) is `422 invalid-uscc` with its `reason`"
        )
    )
    purpose: Purpose
    reference: Reference | None = Field(
        default=None, description="The platform's own reference for this check"
    )
    consent_ref: Reference | None = Field(
        default=None,
        description=(
            "The platform's reference to the owner's authorisation. With the `credit:pii` "
            "scope it unmasks the legal representative of an individual business; it is "
            "stored with the check either way."
        ),
    )


class BatchItem(StrictModel):
    uscc: CheckUSCCInput = Field(
        description="As for a single check: a malformed code is this item's `422 invalid-uscc`"
    )
    reference: Reference | None = None


class BatchCreate(StrictModel):
    purpose: Purpose
    items: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class _Out(BaseModel):
    # Documents the stored JSON exactly: an unexpected member is a bug (tests validate).
    model_config = ConfigDict(extra="forbid")


class MerchantView(_Out):
    uscc: str
    name: str
    entity_type: EntityType
    registration_status: RegistrationStatus
    registered_on: date | None
    legal_representative: str | None = Field(
        description=(
            "Masked (e.g. `张*`) for an individual business unless the client has "
            "`credit:pii` and gave a `consent_ref`"
        )
    )


class ReasonView(_Out):
    category: Category
    severity: Severity
    count: int = Field(ge=1, description="Counting records in this category and severity")
    verdict: Verdict = Field(description="What the policy in force says for this cell")


class RecordView(_Out):
    id: str
    category: Category
    severity: Severity
    status: RecordStatus
    authority: str
    document_no: str
    decided_on: date
    publicity_until: date | None
    summary: str


class CreditCheck(_Out):
    """A credit check exactly as issued; reading it later returns the very same bytes."""

    id: str = Field(description="`chk_` followed by a time-ordered random identifier")
    created_at: datetime
    purpose: Purpose
    reference: str | None
    consent_ref: str | None
    merchant: MerchantView
    verdict: Verdict = Field(
        description=(
            "The worst of the policy's verdicts for the counting records (ACTIVE or "
            "UNDER_OBJECTION and not past publicity_until) and for the merchant's "
            "registration status (a revoked or deregistered merchant can be RESTRICTED "
            "with no records at all)"
        )
    )
    reasons: list[ReasonView] = Field(
        description="Counting records grouped by category and severity, worst first"
    )
    records: list[RecordView] | None = Field(
        default=None,
        description="The counting records, sorted by id; present only with `credit:detail`",
    )
    data_as_of: datetime = Field(description="Newest update of the merchant's data used")
    policy_version: str
    receipt: str = Field(
        description=(
            "Compact JWS (ES256, `kid` in /oauth/jwks, header `typ: credit-check+jwt`) "
            "over `{iss, sub, iat, check_id, uscc, purpose, verdict, policy_version, "
            "records_digest}`. records_digest: " + RECORDS_DIGEST_DESCRIPTION
        )
    )


class BatchResult(BaseModel):
    uscc: str
    status: int = Field(description="200 checked, 404 merchant not found, 422 invalid code")
    check: CreditCheck | None
    problem: Problem | None


class BatchResponse(BaseModel):
    results: list[BatchResult] = Field(description="One result per item, in input order")


class CreditCheckPage(BaseModel):
    items: list[CreditCheck]
    next_cursor: str | None = Field(description="Opaque; pass as ?cursor= for the next page")
