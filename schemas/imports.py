"""``POST /v1/admin/imports``: the NDJSON line shapes and the import report.

Lines accept further (unknown) fields and ignore them, as the contract allows, but
refuse wrong types and values: dates are ``YYYY-MM-DD`` strings only, booleans are
JSON booleans, vocabularies are the closed enums of DOMAIN.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from schemas.common import USCCInput
from schemas.merchants import MerchantFields, RecordFields
from schemas.problems import FieldError


class MerchantLine(MerchantFields):
    model_config = ConfigDict(extra="ignore")

    kind: Literal["merchant"]
    uscc: USCCInput
    legacy_code: StrictBool | None = Field(  # type: ignore[assignment]
        default=None,
        description="A code that fails only the GB 32100 check character is authoritative "
        "data's legacy code (DOMAIN.md): the line is accepted and the merchant flagged "
        "(legacy_code: true), and the report lists the line in legacy_lines. `false` refuses "
        "such a code instead; `true` says so in advance.",
    )


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
    legacy_lines: list[int] = Field(
        default_factory=list,
        description="Merchant lines stored as legacy codes (a code failing only the check "
        "character), first ones by line number (capped like rejected), for review",
    )
    legacy_count: int = Field(default=0, description="All merchant lines stored as legacy codes")
    dry_run: bool = Field(description="True: validated only, nothing was written")
    lines: int = Field(description="Non-blank lines read (blank lines are skipped)")
    merchants: KindCounts
    records: KindCounts
