"""Public identifiers: a prefix and a time-ordered random part (ULID-like, base32).

Time-ordered ids let lists page newest-first on the primary key alone, and the
80 random bits make ids unguessable, so an id never reveals another client's
object by enumeration.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_PAIRS = tuple(high + low for high in _ALPHABET for low in _ALPHABET)
"""Two base-32 digits for every 10-bit value: an id is 13 lookups."""
_SHIFTS = tuple(range(120, -1, -10))
"""The 130 bits of an id (50 of milliseconds, 80 of randomness), 10 at a time."""


def new_id(prefix: str) -> str:
    """``prefix_`` + 10 chars of milliseconds + 16 chars of randomness."""
    millis = time.time_ns() // 1_000_000 & ((1 << 50) - 1)
    value = millis << 80 | int.from_bytes(os.urandom(10), "big")
    return prefix + "_" + "".join([_PAIRS[value >> shift & 1023] for shift in _SHIFTS])


def looks_like_id(value: str, prefix: str) -> bool:
    body = value[len(prefix) + 1 :]
    return (
        value.startswith(prefix + "_") and len(body) == 26 and all(ch in _ALPHABET for ch in body)
    )
