"""``POST /v1/admin/imports``: the NDJSON line shapes and the import report.

Lines accept further (unknown) fields and ignore them, as the contract allows, but
refuse wrong types and values: dates are ``YYYY-MM-DD`` strings only, booleans are
JSON booleans, vocabularies are the closed enums of DOMAIN.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.common import USCCInput
from schemas.merchants import MerchantFields, RecordFields
from schemas.problems import FieldError


class MerchantLine(MerchantFields):
    model_config = ConfigDict(extra="ignore")

    kind: Literal["merchant"]
    uscc: USCCInput


class RecordLine(RecordFields):
    model_config = ConfigDict(extra="ignore")

    kind: Literal["record"]


class RejectedLine(BaseModel):
    line: int = Field(description="1-based line number in the submitted file")
    errors: list[FieldError] = Field(description="What is wrong; the line itself is never echoed")


class KindCounts(BaseModel):
    accepted: int = 0
    updated: int = 0
    unchanged: int = 0


class ImportResult(BaseModel):
    accepted: int = Field(description="Lines that created a merchant or record")
    updated: int = Field(description="Lines that changed an existing one (records get a version)")
    unchanged: int = Field(description="Lines identical to what is stored")
    rejected: list[RejectedLine] = Field(
        description="Rejected lines, first ones by line number (capped; see rejected_count)"
    )
    rejected_count: int = Field(description="All rejected lines")
    dry_run: bool = Field(description="True: validated only, nothing was written")
    lines: int = Field(description="Non-blank lines read (blank lines are skipped)")
    merchants: KindCounts
    records: KindCounts
