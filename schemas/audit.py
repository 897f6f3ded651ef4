"""The audit trail as the contract shows it: events, proofs, checkpoints, verification, usage."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
)

from schemas.common import StrictModel

HEX_HASH = r"^[0-9a-f]{64}$"
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


def _rfc3339_text(value: object) -> object:
    """Only RFC 3339 text with an offset (pydantic alone would also take a Unix time)."""
    if isinstance(value, str) and not _RFC3339.fullmatch(value):
        raise ValueError("an RFC 3339 timestamp with an offset")
    if not isinstance(value, str | datetime):
        raise ValueError("an RFC 3339 timestamp with an offset")
    return value


def _utc(value: datetime) -> datetime:
    """The instant in UTC; one that has none (``0001-01-01T00:00:00+01:00``) is refused."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("a timestamp within years 1 to 9999 in UTC") from None


Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(_utc)]
"""A timestamp parameter: `2026-05-01T08:00:00+08:00` or `...Z`."""


class AuditActor(BaseModel):
    client_id: str | None = Field(
        description="The client behind the token; null if unauthenticated"
    )
    name: str | None
    kind: str = Field(description="client, admin or anonymous")


class AuditTarget(BaseModel):
    type: str | None
    id: str | None


class AuditEventOut(BaseModel):
    """One audit event. Its Merkle leaf is the canonical JSON of this object without `seq`."""

    id: str
    seq: int | None = Field(description="Gapless position in the log once sealed; null until then")
    occurred_at: str = Field(
        json_schema_extra={"format": "date-time"},
        description="RFC 3339, UTC, six fractional digits (the exact text that was hashed)",
    )
    actor: AuditActor
    action: str = Field(description="What was done, e.g. credit_check.create")
    target: AuditTarget
    uscc: str | None
    purpose: str | None
    outcome: str = Field(description="success, denied or error")
    status: int = Field(description="HTTP status of the response")
    request_id: str
    ip: str | None
    details: dict[str, Any] = Field(description="Context of the action; never secrets or tokens")


class InclusionProof(BaseModel):
    """RFC 9162 inclusion proof of the event in the tree of the latest checkpoint."""

    leaf_index: int = Field(description="seq - 1")
    tree_size: int
    root_hash: str = Field(pattern=HEX_HASH, description="Hex SHA-256 root of that tree")
    leaf_hash: str = Field(pattern=HEX_HASH, description="SHA-256(0x00 || canonical event)")
    hashes: list[str] = Field(description="Audit path, leaf side first, hex")
    signed_note: str = Field(description="The signed checkpoint whose root this proof reaches")


class AuditEventDetail(AuditEventOut):
    inclusion_proof: InclusionProof | None = Field(
        description="Null until sealed. Not part of the event: drop it (and seq) before hashing"
    )


class CheckpointOut(BaseModel):
    """A signed tree head (C2SP tlog-checkpoint in a C2SP signed note)."""

    size: int = Field(description="Number of events it seals (seq 1..size)")
    root_hash: str = Field(description="Hex SHA-256 Merkle root")
    signed_note: str
    origin: str = Field(description="First line of the note; also the signing key's name")
    verifier_key: str | None = Field(
        description="Verifier key (<name>+<hash>+<key>) that signed this checkpoint"
    )
    verifier_keys: list[str] = Field(description="Verifier keys of every audit key ever used")
    key_id: str | None
    created_at: datetime | None


class ConsistencyProofOut(BaseModel):
    """RFC 9162 consistency proof: the tree of size `from` is a prefix of the one of size `to`."""

    model_config = ConfigDict(populate_by_name=True)

    from_: int = Field(alias="from")
    to: int
    hashes: list[str] = Field(description="Hex, in RFC 9162 order")
    from_root: str = Field(description="Hex root of the first `from` events, as stored")
    to_root: str = Field(description="Hex root of the first `to` events, as stored")


class VerifyRequest(StrictModel):
    from_seq: StrictInt | None = Field(default=None, ge=1)
    to_seq: StrictInt | None = Field(default=None, ge=1)


class VerifyResultOut(BaseModel):
    ok: bool
    checked: int = Field(description="Events whose leaves were recomputed")
    first_bad_seq: int | None
    problem: str | None


class AccessLogEntry(BaseModel):
    """One access to a merchant's credit data: who, when, why."""

    event_id: str
    seq: int | None
    occurred_at: str = Field(json_schema_extra={"format": "date-time"})
    client_id: str | None
    client_name: str | None
    action: str
    purpose: str | None
    outcome: str
    status: int
    verdict: str | None
    check_id: str | None
    request_id: str


class ClientChecks(BaseModel):
    client_id: str | None
    checks: int


class DayChecks(BaseModel):
    date: str = Field(description="YYYY-MM-DD in Asia/Shanghai")
    checks: int


class VerdictChecks(BaseModel):
    verdict: str | None = Field(description="Null for checks that issued no verdict")
    checks: int


class StatsRow(BaseModel):
    client_id: str | None
    date: str
    verdict: str | None
    checks: int


class AuditStats(BaseModel):
    """Credit checks counted per client, per day (Asia/Shanghai) and per verdict."""

    since: datetime | None
    until: datetime | None
    timezone: str
    total: int
    per_client: list[ClientChecks]
    per_day: list[DayChecks]
    per_verdict: list[VerdictChecks]
    rows: list[StatsRow] = Field(description="The three-way breakdown")
