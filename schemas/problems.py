"""RFC 9457 problem details as the contract shows them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = Field(description="Absolute URI ending in /problems/<slug>")
    title: str
    status: int
    detail: str
    request_id: str
    errors: list[FieldError] | None = None
    reason: str | None = Field(
        default=None, description="For invalid-uscc: length, charset or checksum"
    )
