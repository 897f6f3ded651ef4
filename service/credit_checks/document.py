"""The CreditCheck JSON document (see ``schemas.credit_checks.CreditCheck``).

Built as plain dicts and serialised once with orjson: the bytes are both the response
and what is stored, so a later read returns them unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from service.credit_checks.repository import RecordData, Subject
from service.crypto import KeyRing
from service.personal_data import is_personal, unseal

REPRESENTATIVE_FIELD = "legal_representative"


def timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with ``Z`` (as the rest of the API writes timestamps)."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def record_view(record: RecordData) -> dict[str, object]:
    """A record as a check shows it, and as ``records_digest`` hashes it."""
    return {
        "id": record.id,
        "category": record.category,
        "severity": record.severity,
        "status": record.status,
        "authority": record.authority,
        "document_no": record.document_no,
        "decided_on": record.decided_on.isoformat(),
        "publicity_until": None
        if record.publicity_until is None
        else record.publicity_until.isoformat(),
        "summary": record.summary,
    }


def records_view(records: Sequence[RecordData]) -> list[dict[str, object]]:
    return [record_view(r) for r in sorted(records, key=lambda r: r.id)]


def shows_personal_data(subject: Subject, *, may_unmask: bool) -> bool:
    """Whether the check will show an individual business owner's real name."""
    return (
        may_unmask
        and is_personal(subject.entity_type, subject.uscc)
        and subject.legal_representative_enc is not None
    )


def merchant_view(subject: Subject, keyring: KeyRing, *, unmask: bool) -> dict[str, object]:
    """The merchant; the representative is decrypted only when ``unmask`` (PII + consent)."""
    representative = subject.legal_representative_masked
    if unmask and subject.legal_representative_enc is not None:
        representative = unseal(
            keyring,
            subject.legal_representative_enc,
            uscc=subject.uscc,
            field=REPRESENTATIVE_FIELD,
        )
    name = subject.name if unmask or subject.name_masked is None else subject.name_masked
    return {
        "uscc": subject.uscc,
        "name": name,
        "entity_type": subject.entity_type,
        "registration_status": subject.registration_status,
        "registered_on": None
        if subject.registered_on is None
        else subject.registered_on.isoformat(),
        "legal_representative": representative,
    }
