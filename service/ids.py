"""Public identifiers: a prefix and a time-ordered random part (ULID-like, base32).

Time-ordered ids let lists page newest-first on the primary key alone, and the
80 random bits make ids unguessable, so an id never reveals another client's
object by enumeration.
"""

from __future__ import annotations

import base64
import os
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_PAIRS = tuple(high + low for high in _ALPHABET for low in _ALPHABET)
"""Two base-32 digits for every 10-bit value."""


_RANDOM_BYTES = 10
_RANDOM_DIGITS = _RANDOM_BYTES * 8 // 5
_POOL_BYTES = 4000
"""Random bytes read from the OS at a time: 400 ids (a multiple of five bytes, so that the
pool encodes to whole base-32 digits)."""
_FROM_RFC4648 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())
"""RFC 4648 base 32 and ours both write five bits per digit, most significant first: only
the digits differ."""


class _RandomPool(threading.local):
    """Each thread's unread randomness from ``os.urandom``, already in base-32 digits.

    One ``os.urandom`` call per id cost more than the rest of the id: the call releases
    the GIL around ``getrandom``, so on a busy server every id handed the GIL to another
    thread and waited to get it back (three ids per credit check). Bytes read ahead are
    as unpredictable as bytes read now; they are per thread (no lock) and dropped in a
    forked child, which must never reuse its parent's.
    """

    def __init__(self) -> None:
        self.digits = ""
        self.used = 0

    def take(self) -> str:
        """The next 16 digits: 80 random bits."""
        start = self.used
        if start + _RANDOM_DIGITS > len(self.digits):
            encoded = base64.b32encode(os.urandom(_POOL_BYTES)).translate(_FROM_RFC4648)
            self.digits, start = encoded.decode("ascii"), 0
        self.used = start + _RANDOM_DIGITS
        return self.digits[start : start + _RANDOM_DIGITS]

    def drop(self) -> None:
        self.digits, self.used = "", 0


_POOL = _RandomPool()
os.register_at_fork(after_in_child=_POOL.drop)

_MILLIS_MASK = (1 << 50) - 1
_TIME_SHIFTS = tuple(range(40, -1, -10))
_last_time: tuple[int, str] = (-1, "")
"""The latest millisecond and its ten digits (ids made together share them)."""


def _time_digits(millis: int) -> str:
    global _last_time
    last_millis, digits = _last_time
    if millis != last_millis:
        digits = "".join([_PAIRS[millis >> shift & 1023] for shift in _TIME_SHIFTS])
        _last_time = (millis, digits)
    return digits


def new_id(prefix: str) -> str:
    """``prefix_`` + 10 digits of milliseconds + 16 digits of randomness."""
    millis = time.time_ns() // 1_000_000 & _MILLIS_MASK
    return prefix + "_" + _time_digits(millis) + _POOL.take()


def looks_like_id(value: str, prefix: str) -> bool:
    body = value[len(prefix) + 1 :]
    return (
        value.startswith(prefix + "_") and len(body) == 26 and all(ch in _ALPHABET for ch in body)
    )
