"""Public identifiers: a prefix and a time-ordered random part (ULID-like, base32).

Time-ordered ids let lists page newest-first on the primary key alone, and the
80 random bits make ids unguessable, so an id never reveals another client's
object by enumeration.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_PAIRS = tuple(high + low for high in _ALPHABET for low in _ALPHABET)
"""Two base-32 digits for every 10-bit value: an id is 13 lookups."""
_SHIFTS = tuple(range(120, -1, -10))
"""The 130 bits of an id (50 of milliseconds, 80 of randomness), 10 at a time."""


_RANDOM_BYTES = 10
_POOL_BYTES = 4000
"""Random bytes read from the OS at a time: 400 ids."""


class _RandomPool(threading.local):
    """Each thread's unread bytes from ``os.urandom``.

    One ``os.urandom`` call per id cost more than the rest of the id: the call releases
    the GIL around ``getrandom``, so on a busy server every id handed the GIL to another
    thread and waited to get it back (three ids per credit check). Bytes read ahead are
    as unpredictable as bytes read now; they are per thread (no lock) and dropped in a
    forked child, which must never reuse its parent's.
    """

    def __init__(self) -> None:
        self.data = b""
        self.used = 0

    def take(self) -> int:
        start = self.used
        if start + _RANDOM_BYTES > len(self.data):
            self.data, start = os.urandom(_POOL_BYTES), 0
        self.used = start + _RANDOM_BYTES
        return int.from_bytes(self.data[start : start + _RANDOM_BYTES], "big")

    def drop(self) -> None:
        self.data, self.used = b"", 0


_POOL = _RandomPool()
os.register_at_fork(after_in_child=_POOL.drop)


def new_id(prefix: str) -> str:
    """``prefix_`` + 10 chars of milliseconds + 16 chars of randomness."""
    millis = time.time_ns() // 1_000_000 & ((1 << 50) - 1)
    value = millis << 80 | _POOL.take()
    return prefix + "_" + "".join([_PAIRS[value >> shift & 1023] for shift in _SHIFTS])


def looks_like_id(value: str, prefix: str) -> bool:
    body = value[len(prefix) + 1 :]
    return (
        value.startswith(prefix + "_") and len(body) == 26 and all(ch in _ALPHABET for ch in body)
    )
