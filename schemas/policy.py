"""The verdict policy: category x severity -> verdict, plus registration-status rules."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from schemas.common import StrictModel
from schemas.enums import Category, RegistrationStatus, Severity, Verdict

Matrix = dict[Category, dict[Severity, Verdict]]
StatusRules = dict[RegistrationStatus, Verdict | None]

MATRIX_DESCRIPTION = (
    "Every category with every severity (MINOR, GENERAL, SERIOUS) -> verdict. "
    "HONOR (positive information) must be CLEAR in every severity."
)
STATUS_DESCRIPTION = (
    "Registration status -> the verdict it imposes at least (null: none). REVOKED and "
    "DEREGISTERED must be given; ACTIVE defaults to null."
)


class PolicyIn(StrictModel):
    """A complete new policy; it becomes the next version, earlier ones are kept."""

    matrix: Matrix = Field(description=MATRIX_DESCRIPTION)
    registration_status: StatusRules = Field(description=STATUS_DESCRIPTION)


class PolicyOut(BaseModel):
    version: int = Field(description="Increases by one with every change; checks quote it")
    created_at: datetime
    created_by: str = Field(description="Client id of the administrator, or `migration`")
    matrix: Matrix = Field(description=MATRIX_DESCRIPTION)
    registration_status: StatusRules = Field(description=STATUS_DESCRIPTION)
