"""Merchants and credit records as administrators (``admin:data``) write and read them.

The field sets follow the import line shapes of the contract, so that
``PUT /v1/admin/merchants/{uscc}`` and ``POST /v1/admin/records`` take exactly a
merchant or record line without its ``kind``. The ``*Fields`` bases carry the
fields and their checks; request models add ``extra="forbid"`` (unknown fields
are 422) while the import lines in :mod:`schemas.imports` ignore further fields.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from schemas.common import USCCInput
from schemas.enums import Category, EntityType, RecordStatus, RegistrationStatus, Severity

_NO_NUL = r"^[^\x00]*$"
MAX_REASON = 2000


def _iso_date(value: object) -> object:
    """Only ``YYYY-MM-DD`` strings (or dates): no timestamps, numbers or datetimes.

    The shape is checked here, the digits and the calendar by pydantic's date parser.
    """
    if isinstance(value, str) and len(value) == 10 and value[4] == value[7] == "-":
        return value
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    raise ValueError("must be a date written YYYY-MM-DD")


def _blank_is_none(value: object) -> object:
    """Sources write ``""`` for an absent optional value; treat it as absent."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _stripped(max_length: int) -> StringConstraints:
    """Trimmed text of 1..max_length characters without NUL (which PostgreSQL cannot store).

    Lone surrogates, which no database can store either, are refused by pydantic itself.
    The check is a pattern so that it runs in pydantic's core: imports validate millions
    of strings.
    """
    return StringConstraints(
        strip_whitespace=True, min_length=1, max_length=max_length, pattern=_NO_NUL
    )


ISODate = Annotated[date, BeforeValidator(_iso_date)]
OptionalISODate = Annotated[ISODate | None, BeforeValidator(_blank_is_none)]

# Sizes follow the columns (service/models/merchant.py); masked copies keep the length.
Name = Annotated[str, _stripped(200)]
PersonName = Annotated[
    Annotated[str, _stripped(100)] | None,
    BeforeValidator(_blank_is_none),
]
IdNumber = Annotated[
    Annotated[str, _stripped(40)] | None,
    BeforeValidator(_blank_is_none),
]
Address = Annotated[
    Annotated[str, _stripped(300)] | None,
    BeforeValidator(_blank_is_none),
]
Source = Annotated[str, _stripped(64)]
SourceRecordId = Annotated[str, _stripped(128)]
Authority = Annotated[str, _stripped(200)]
DocumentNo = Annotated[str, _stripped(200)]
Summary = Annotated[str, _stripped(4000)]
Reason = Annotated[str, _stripped(MAX_REASON)]


# ---- merchants ---------------------------------------------------------------------------
class MerchantFields(BaseModel):
    """A merchant as its source describes it (the merchant line minus ``kind`` and ``uscc``)."""

    name: Name
    entity_type: EntityType
    registration_status: RegistrationStatus
    registered_on: OptionalISODate = None
    legal_representative: PersonName = Field(
        default=None,
        description="Stored encrypted; shown masked when the merchant is an individual business",
    )
    owner_id_number: IdNumber = Field(
        default=None, description="Owner's id number; stored encrypted, always shown masked"
    )
    address: Address = None
    legacy_code: StrictBool = Field(
        default=False,
        description="Accept a code that fails only the GB 32100 check character (flagged)",
    )


class MerchantPut(MerchantFields):
    """Body of ``PUT /v1/admin/merchants/{uscc}``: the whole merchant (create or replace)."""

    model_config = ConfigDict(extra="forbid")

    uscc: USCCInput | None = Field(
        default=None, description="Optional; if present it must be the code in the path"
    )


# ---- records -----------------------------------------------------------------------------
class RecordFields(BaseModel):
    """A credit record as its source describes it (the record line minus ``kind``)."""

    source: Source = Field(description="The issuing source system, e.g. court, tax")
    source_record_id: SourceRecordId = Field(description="The record's id at its source")
    uscc: USCCInput
    category: Category
    severity: Severity
    status: RecordStatus = RecordStatus.ACTIVE
    authority: Authority
    document_no: DocumentNo
    decided_on: ISODate
    publicity_until: OptionalISODate = None
    summary: Summary

    @field_validator("publicity_until")
    @classmethod
    def _not_before_decision(cls, value: date | None, info: ValidationInfo) -> date | None:
        decided = info.data.get("decided_on")
        if value is not None and isinstance(decided, date) and value < decided:
            raise ValueError("must not be before decided_on")
        return value


class RecordCreate(RecordFields):
    """Body of ``POST /v1/admin/records``."""

    model_config = ConfigDict(extra="forbid")


class RecordPatch(BaseModel):
    """Body of ``PATCH /v1/admin/records/{id}``: a status change and/or corrections.

    A status change needs a ``reason``; corrections may give one (it is kept in the
    history either way). Fields that are left out keep their value.
    """

    model_config = ConfigDict(extra="forbid")

    status: RecordStatus | None = None
    reason: Reason | None = Field(
        default=None, description="Why; required when status changes (kept in the history)"
    )
    category: Category | None = None
    severity: Severity | None = None
    authority: Authority | None = None
    document_no: DocumentNo | None = None
    decided_on: ISODate | None = None
    publicity_until: ISODate | None = Field(
        default=None, description="null removes the end of publicity"
    )
    summary: Summary | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> RecordPatch:
        if not (self.model_fields_set - {"reason"}):
            raise ValueError("nothing to change: give status or a field to correct")
        for name in ("category", "severity", "authority", "document_no", "decided_on", "summary"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be removed")
        if "status" in self.model_fields_set and self.status is None:
            raise ValueError("status cannot be removed")
        return self


# ---- responses ---------------------------------------------------------------------------
class RecordOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    uscc: str
    source: str
    source_record_id: str
    category: str
    severity: str
    status: str
    authority: str
    document_no: str
    decided_on: date
    publicity_until: date | None
    summary: str
    version: int
    created_at: datetime
    updated_at: datetime


class RecordHistoryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    changed_at: datetime
    changed_by: str = Field(description="The client id (or command) that made the change")
    change: str = Field(description="create, import, status_change or correction")
    reason: str | None
    snapshot: dict[str, Any] = Field(description="The whole record as of this version")


class RecordDetail(RecordOut):
    history: list[RecordHistoryOut] = Field(description="Every version, oldest first")


class MerchantOut(BaseModel):
    uscc: str
    name: str
    entity_type: str
    registration_status: str
    registered_on: date | None
    legal_representative: str | None = Field(
        description="Masked for individual businesses (personal data)"
    )
    owner_id_number: str | None = Field(description="Always masked")
    address: str | None
    legacy_code: bool = Field(description="The code fails the GB 32100 check (legacy data)")
    org_code_warning: bool = Field(description="The GB 11714 organisation code check fails")
    created_at: datetime
    updated_at: datetime
    data_updated_at: datetime = Field(
        description="Newest change of the merchant or its records (a check's data_as_of)"
    )
    records: list[RecordOut] = Field(description="Newest decision first")
