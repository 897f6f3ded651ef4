"""How merchant and record data become rows, shared by the admin routes and the importer.

* Codes are normalised (trim, upper-case) and checked; a code that fails only the
  GB 32100 check character is a *legacy* code, stored with a flag when the source
  says so (or when the registry already holds it as one).
* Personal data is sealed per field and per merchant (``service.personal_data``) next
  to a masked copy, exactly as the rest of the service expects to read it.
* Every merchant row carries a keyed digest of its plaintext content in ``extra``,
  so that an import can tell "unchanged" from "updated" without decrypting anything.
  The digest is an HMAC under a key derived from the master key: a plain hash of a
  short name would be reversible by trying every name.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

from schemas.merchants import MerchantFields, RecordFields
from schemas.uscc import USCCError, normalize_uscc, organisation_code_warning, validate_uscc
from service.crypto import DecryptionError, KeyRing
from service.personal_data import (
    is_personal,
    mask_id_number,
    mask_name,
    mask_owner_in_name,
    seal,
    unseal,
)

DIGEST_KEY = "content_digest"
REP_FIELD = "legal_representative"
OWNER_FIELD = "owner_id_number"


# ---- codes -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CheckedCode:
    """A normalised code that has the right length and alphabet."""

    code: str
    checksum_failed: bool


def check_code(raw: str) -> CheckedCode:
    """Normalise ``raw``; raise :class:`USCCError` unless only the check character may be wrong."""
    try:
        return CheckedCode(validate_uscc(raw), False)
    except USCCError as exc:
        if exc.reason != "checksum":
            raise
        return CheckedCode(normalize_uscc(raw), True)


# ---- merchants ---------------------------------------------------------------------------
class MerchantState(NamedTuple):
    """Everything a source says about a merchant, in plaintext (never stored like this)."""

    name: str
    entity_type: str
    registration_status: str
    registered_on: date | None
    legal_representative: str | None
    owner_id_number: str | None
    address: str | None
    legacy_code: bool


def merchant_state(fields: MerchantFields, *, legacy: bool) -> MerchantState:
    return MerchantState(
        name=fields.name,
        entity_type=fields.entity_type.value,
        registration_status=fields.registration_status.value,
        registered_on=fields.registered_on,
        legal_representative=fields.legal_representative,
        owner_id_number=fields.owner_id_number,
        address=fields.address,
        legacy_code=legacy,
    )


class RowCodec:
    """Seals, masks and digests merchant data for one key ring (thread-safe)."""

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring
        # Derived once: the key ring derives per call, which adds up over a million rows.
        self._digest_key = keyring.lookup_hash("merchant-content", purpose="merchant-digest")

    def digest(self, uscc: str, state: MerchantState) -> str:
        payload = orjson.dumps([uscc, *state])
        return hmac.new(self._digest_key.encode(), payload, hashlib.sha256).hexdigest()[:40]

    def values(
        self, uscc: str, state: MerchantState, *, digest: str, now: datetime
    ) -> dict[str, Any]:
        """Column values of a merchant row (without ``created_at``)."""
        rep = state.legal_representative
        owner = state.owner_id_number
        personal = is_personal(state.entity_type, uscc)
        return {
            "uscc": uscc,
            "name": state.name,
            "name_masked": mask_owner_in_name(state.name, rep) if personal and rep else None,
            "entity_type": state.entity_type,
            "registration_status": state.registration_status,
            "registered_on": state.registered_on,
            "legal_representative_enc": seal(self.keyring, rep, uscc=uscc, field=REP_FIELD)
            if rep
            else None,
            # A company's legal representative is public registry data; an individual
            # business's owner is a natural person (PIPL), so only a masked copy is kept.
            "legal_representative_masked": (mask_name(rep) if personal else rep) if rep else None,
            "owner_id_enc": seal(self.keyring, owner, uscc=uscc, field=OWNER_FIELD)
            if owner
            else None,
            "owner_id_masked": mask_id_number(owner) if owner else None,
            "address": state.address,
            "legacy_code": state.legacy_code,
            "org_code_warning": organisation_code_warning(uscc),
            "extra": {DIGEST_KEY: digest},
            "updated_at": now,
            "data_updated_at": now,
        }

    def stored_digest(self, row: Mapping[Any, Any]) -> str | None:
        """The digest of a stored merchant row; recomputed (decrypting) for rows without one."""
        extra = row.get("extra")
        if isinstance(extra, dict) and isinstance(extra.get(DIGEST_KEY), str):
            return str(extra[DIGEST_KEY])
        uscc = str(row["uscc"])
        try:
            rep = self._open(row.get("legal_representative_enc"), uscc, REP_FIELD)
            owner = self._open(row.get("owner_id_enc"), uscc, OWNER_FIELD)
        except DecryptionError:
            return None  # unreadable: any new content replaces it
        state = MerchantState(
            name=row["name"],
            entity_type=row["entity_type"],
            registration_status=row["registration_status"],
            registered_on=row["registered_on"],
            legal_representative=rep,
            owner_id_number=owner,
            address=row["address"],
            legacy_code=bool(row["legacy_code"]),
        )
        return self.digest(uscc, state)

    def _open(self, token: object, uscc: str, field: str) -> str | None:
        if not token:
            return None
        return unseal(self.keyring, str(token), uscc=uscc, field=field)


@lru_cache(maxsize=8)
def codec_for(keyring: KeyRing) -> RowCodec:
    return RowCodec(keyring)


def describe_merchant(values: Mapping[str, Any]) -> dict[str, object]:
    """What the audit trail keeps of a merchant: masked personal data only."""
    registered = values.get("registered_on")
    return {
        "name": values.get("name_masked") or values["name"],
        "entity_type": values["entity_type"],
        "registration_status": values["registration_status"],
        "registered_on": registered.isoformat() if isinstance(registered, date) else None,
        "legal_representative": values.get("legal_representative_masked"),
        "owner_id_number": values.get("owner_id_masked"),
        "address": values.get("address"),
        "legacy_code": bool(values.get("legacy_code")),
    }


# ---- records -----------------------------------------------------------------------------
class RecordState(NamedTuple):
    """The content of a record that a source (or an administrator) may change."""

    uscc: str
    category: str
    severity: str
    status: str
    authority: str
    document_no: str
    decided_on: date
    publicity_until: date | None
    summary: str


RECORD_FIELDS = RecordState._fields


def record_state(fields: RecordFields, uscc: str) -> RecordState:
    return RecordState(
        uscc=uscc,
        category=fields.category.value,
        severity=fields.severity.value,
        status=fields.status.value,
        authority=fields.authority,
        document_no=fields.document_no,
        decided_on=fields.decided_on,
        publicity_until=fields.publicity_until,
        summary=fields.summary,
    )


def stored_record_state(row: Mapping[Any, Any]) -> RecordState:
    return RecordState(*(row[name] for name in RECORD_FIELDS))


def snapshot(source: str, source_record_id: str, state: RecordState) -> dict[str, object]:
    """The whole record as one history version keeps it (JSON-ready)."""
    until = state.publicity_until
    return {
        "source": source,
        "source_record_id": source_record_id,
        "uscc": state.uscc,
        "category": state.category,
        "severity": state.severity,
        "status": state.status,
        "authority": state.authority,
        "document_no": state.document_no,
        "decided_on": state.decided_on.isoformat(),
        "publicity_until": until.isoformat() if until is not None else None,
        "summary": state.summary,
    }
