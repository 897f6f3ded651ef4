"""Public ids: ``prefix_`` + 26 base-32 digits, 50 bits of milliseconds then 80 random
bits, so they sort by creation time and cannot be guessed."""

from __future__ import annotations

import os
from unittest import mock

import pytest

from service.ids import looks_like_id, new_id

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _digits(value: int, count: int) -> str:
    """The reference: ``count`` base-32 digits of ``value``, most significant first."""
    out = []
    for _ in range(count):
        out.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


@pytest.mark.parametrize("millis", [0, 1, 1_764_460_800_123, (1 << 50) - 1])
@pytest.mark.parametrize("random", [b"\0" * 10, b"\xff" * 10, bytes(range(10))])
def test_id_is_time_then_randomness_in_base32(millis: int, random: bytes) -> None:
    with (
        mock.patch("time.time_ns", return_value=millis * 1_000_000),
        mock.patch("os.urandom", return_value=random),
    ):
        made = new_id("chk")
    assert made == "chk_" + _digits(millis, 10) + _digits(int.from_bytes(random, "big"), 16)
    assert looks_like_id(made, "chk")


def test_ids_sort_by_time_and_differ() -> None:
    with mock.patch("time.time_ns", return_value=1_000_000_000_000):
        first = {new_id("evt") for _ in range(1000)}
    with mock.patch("time.time_ns", return_value=1_000_001_000_000):
        later = new_id("evt")
    assert len(first) == 1000
    assert all(later > made for made in first)


def test_looks_like_id_refuses_other_shapes() -> None:
    good = new_id("chk")
    assert not looks_like_id(good, "evt")
    assert not looks_like_id(good[:-1], "chk")
    assert not looks_like_id(good[:-1] + "u", "chk")  # not in the alphabet
    assert not looks_like_id("chk_" + os.urandom(13).hex()[:26].upper(), "chk")
