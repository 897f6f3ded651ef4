"""Building blocks shared by request and response models."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

T = TypeVar("T")

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50


class StrictModel(BaseModel):
    """Request bodies: unknown fields are refused, so a client never sets what it does not own."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# No control characters in free text: they have no business in a name or a reference, and
# PostgreSQL cannot store NUL at all (one such value would fail the whole transaction).
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]*$"
NO_CONTROL_BUT_TAB_AND_LINE_BREAKS = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
ShortText = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=NO_CONTROL_CHARACTERS)
]
Reference = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=NO_CONTROL_CHARACTERS)
]
Text = Annotated[
    str,
    StringConstraints(min_length=1, max_length=4000, pattern=NO_CONTROL_BUT_TAB_AND_LINE_BREAKS),
]
# Loose on input (trimmed and upper-cased by the service), bounded in size.
USCCInput = Annotated[str, StringConstraints(min_length=1, max_length=64)]
# A code to check, as a platform sends it: any text of up to 256 characters. What is not a
# well-formed code (blank, too short or too long, wrong characters, wrong check
# character) is the check's own ``422 invalid-uscc`` with its ``reason``, never a
# validation error of the request: in a batch that is one item's answer, and the other
# items are still checked. Longer text is not a code at all: the request is malformed. The
# bound is on the text as sent (no stripping first, unlike other fields), as the schema
# says; the service trims (full-width spaces too) when it normalises the code.
CheckUSCCInput = Annotated[str, StringConstraints(max_length=256, strip_whitespace=False)]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Opaque; pass as ?cursor= for the next page")
