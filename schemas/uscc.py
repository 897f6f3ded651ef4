"""Unified Social Credit Code (统一社会信用代码, GB 32100-2015) validation.

Layout of the 18 characters: position 1 registration authority, 2 entity type,
3-8 administrative division, 9-17 the organisation code (GB 11714, itself 8
characters plus a check digit), 18 the GB 32100 check character.

Only the GB 32100 check is enforced. The embedded GB 11714 check digit is known
to fail on some genuine codes, so :func:`organisation_code_warning` reports it
and callers may log or flag it, but must never reject on it.

This module is pure (no I/O, no project imports) so that request schemas, the
importer and the demo generator all share exactly one definition.
"""

from __future__ import annotations

import re
from operator import mul
from typing import Final, Literal

__all__ = [
    "ALPHABET",
    "WEIGHTS",
    "USCCError",
    "USCCReason",
    "check_character",
    "is_individual_business",
    "normalize_uscc",
    "organisation_code_check_digit",
    "organisation_code_warning",
    "uscc_problem_reason",
    "validate_uscc",
]

ALPHABET: Final = "0123456789ABCDEFGHJKLMNPQRTUWXY"
"""The 31 code characters, valued 0..30 in this order (no I, O, S, V, Z)."""

USCC_LENGTH: Final = 18

WEIGHTS: Final[tuple[int, ...]] = tuple(pow(3, i, 31) for i in range(USCC_LENGTH - 1))
"""Weights of positions 1..17: 3^(i-1) mod 31."""

_VALUES: Final[dict[str, int]] = {c: v for v, c in enumerate(ALPHABET)}
_CODE_CHARACTERS: Final = re.compile(f"[{ALPHABET}]*")
_TO_VALUE: Final = str.maketrans({c: chr(v) for c, v in _VALUES.items()})
"""Each code character to the character numbered by its value, so that a code's values
come out as bytes (``translate`` and ``encode`` run in C: every check validates a code)."""

# Only ASCII letters are upper-cased: str.upper() maps some non-ASCII characters
# onto several ASCII ones (e.g. the ligature "ﬀ" becomes "FF"), which would let
# a 17-character input turn into a valid 18-character code.
_ASCII_UPPER: Final = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")

# str.strip() already removes Unicode whitespace, including the ideographic
# (full-width) space U+3000 that Chinese input methods produce. A BOM or a
# zero-width space pasted from a document is not "whitespace" to Python but is
# just as invisible, so strip those too.
_INVISIBLE: Final = "\ufeff\u200b"

USCCReason = Literal["length", "charset", "checksum"]

_MESSAGES: Final[dict[USCCReason, str]] = {
    "length": "a Unified Social Credit Code has exactly 18 characters",
    "charset": "a Unified Social Credit Code uses only 0-9 and A-Y without I, O, S, V, Z",
    "checksum": "the check character of the Unified Social Credit Code is wrong",
}

# GB 11714 organisation code check digit.
_ORG_WEIGHTS: Final = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_BODY_SLICE: Final = slice(8, 16)
_ORG_CHECK_INDEX: Final = 16


class USCCError(ValueError):
    """A code that fails GB 32100 validation.

    The message is fixed per ``reason`` and never contains the submitted input,
    so it can be put into an API problem or a log line as is.
    """

    reason: USCCReason

    def __init__(self, reason: USCCReason) -> None:
        super().__init__(_MESSAGES[reason])
        self.reason = reason

    def __reduce__(self) -> tuple[type[USCCError], tuple[USCCReason]]:
        # ValueError pickles its message as the constructor argument; keep the reason.
        return (type(self), (self.reason,))


def normalize_uscc(raw: str) -> str:
    """Trim surrounding (also full-width) whitespace and upper-case ASCII letters."""
    return raw.strip().strip(_INVISIBLE).strip().translate(_ASCII_UPPER)


def _weighted_sum(body17: str) -> int:
    """Of characters already known to be code characters."""
    return sum(map(mul, body17.translate(_TO_VALUE).encode("latin-1"), WEIGHTS))


def _check_from_sum(total: int) -> str:
    # 31 - (sum mod 31), where 31 itself is written as 0.
    return ALPHABET[-total % 31]


def check_character(body17: str) -> str:
    """Compute the 18th (check) character for the first 17 characters of a code.

    ``body17`` must already be normalised; raises :class:`USCCError` with reason
    ``length`` or ``charset`` otherwise.
    """
    if len(body17) != USCC_LENGTH - 1:
        raise USCCError("length")
    if not _CODE_CHARACTERS.fullmatch(body17):
        raise USCCError("charset")
    return _check_from_sum(_weighted_sum(body17))


def validate_uscc(raw: str) -> str:
    """Normalise and validate a code; return the normalised code.

    Checks run in the order length, charset, checksum, so ``reason`` names the
    first problem found.
    """
    code = normalize_uscc(raw)
    if len(code) != USCC_LENGTH:
        raise USCCError("length")
    if not _CODE_CHARACTERS.fullmatch(code):
        raise USCCError("charset")
    if _check_from_sum(_weighted_sum(code[:-1])) != code[-1]:
        raise USCCError("checksum")
    return code


def uscc_problem_reason(raw: str) -> USCCReason | None:
    """The reason ``raw`` is not a valid code, or None if it is valid."""
    try:
        validate_uscc(raw)
    except USCCError as exc:
        return exc.reason
    return None


def _org_value(c: str) -> int | None:
    if "0" <= c <= "9":
        return ord(c) - ord("0")
    if "A" <= c <= "Z":
        return ord(c) - ord("A") + 10
    return None


def organisation_code_check_digit(org_body8: str) -> str | None:
    """GB 11714 check digit for the 8-character organisation code body.

    Returns None when the body is not 8 characters of 0-9/A-Z.
    """
    if len(org_body8) != len(_ORG_WEIGHTS):
        return None
    total = 0
    for c, w in zip(org_body8, _ORG_WEIGHTS, strict=True):
        v = _org_value(c)
        if v is None:
            return None
        total += v * w
    check = 11 - total % 11
    if check == 10:
        return "X"
    if check == 11:
        return "0"
    return str(check)


def organisation_code_warning(code: str) -> bool:
    """True when positions 9-17 fail the GB 11714 check digit (or cannot be checked).

    Advisory only: genuine codes sometimes fail this check, so a True result
    must never cause a code to be rejected.
    """
    code = normalize_uscc(code)
    if len(code) != USCC_LENGTH:
        return True
    expected = organisation_code_check_digit(code[_ORG_BODY_SLICE])
    return expected is None or expected != code[_ORG_CHECK_INDEX]


def is_individual_business(code: str) -> bool:
    """Prefix ``92``: an individual business (个体工商户), run by a natural person (PIPL)."""
    return normalize_uscc(code).startswith("92")
