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
    "DEREGISTERED must be given, as RESTRICTED (a revoked or deregistered merchant is "
    "RESTRICTED whatever its records); ACTIVE defaults to null."
)


class PolicyIn(StrictModel):
    """A complete new policy; it becomes the next version, earlier ones are kept. The
    document ``GET`` returned, edited, may be sent back as it is."""

    matrix: Matrix = Field(description=MATRIX_DESCRIPTION)
    registration_status: StatusRules = Field(description=STATUS_DESCRIPTION)
    version: int | None = Field(
        default=None,
        ge=1,
        description="Optional: the version this change was made from, as GET returned it. "
        "If the policy has changed since, the change is refused (409 conflict) instead of "
        "silently undoing the other change.",
    )
    created_at: datetime | None = Field(
        default=None,
        description="Read-only: accepted so that the document GET returned can be sent back, "
        "and ignored (the new version's time is the server's).",
    )
    created_by: str | None = Field(
        default=None,
        max_length=200,
        description="Read-only: accepted and ignored, as created_at.",
    )


class PolicyOut(BaseModel):
    version: int = Field(description="Increases by one with every change; checks quote it")
    created_at: datetime
    created_by: str = Field(description="Client id of the administrator, or `migration`")
    matrix: Matrix = Field(description=MATRIX_DESCRIPTION)
    registration_status: StatusRules = Field(description=STATUS_DESCRIPTION)
