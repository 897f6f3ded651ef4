"""Opaque cursors for newest-first lists keyed by a string or integer id."""

from __future__ import annotations

import base64
import binascii

from service.problems import ProblemError


def encode_cursor(last_key: str | int) -> str:
    raw = f"{'i' if isinstance(last_key, int) else 's'}:{last_key}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _invalid() -> ProblemError:
    return ProblemError("validation-failed", errors=[("cursor", "Invalid cursor")])


def decode_cursor(cursor: str | None) -> str | int | None:
    if cursor is None or cursor == "":
        return None
    if len(cursor) > 200:
        raise _invalid()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _invalid() from None
    kind, _, value = raw.partition(":")
    if kind == "i" and value.isdigit():
        return int(value)
    if kind == "s" and value and value.isascii():
        return value
    raise _invalid()


def decode_str_cursor(cursor: str | None) -> str | None:
    value = decode_cursor(cursor)
    if value is not None and not isinstance(value, str):
        raise _invalid()
    return value


def decode_int_cursor(cursor: str | None) -> int | None:
    value = decode_cursor(cursor)
    if value is not None and not isinstance(value, int):
        raise _invalid()
    return value
