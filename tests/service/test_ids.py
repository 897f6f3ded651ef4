"""Public ids: ``prefix_`` + 26 base-32 digits, 50 bits of milliseconds then 80 random
bits, so they sort by creation time and cannot be guessed."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from unittest import mock

import pytest

from service import ids
from service.ids import looks_like_id, new_id

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _digits(value: int, count: int) -> str:
    """The reference: ``count`` base-32 digits of ``value``, most significant first."""
    out = []
    for _ in range(count):
        out.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


@pytest.fixture
def empty_pool() -> Iterator[None]:
    """This thread's read-ahead random bytes dropped before and after the test."""
    ids._POOL.drop()
    yield
    ids._POOL.drop()


def _repeating(random: bytes) -> mock.Mock:
    return mock.Mock(side_effect=lambda n: (random * (n // len(random) + 1))[:n])


@pytest.mark.parametrize("millis", [0, 1, 1_764_460_800_123, (1 << 50) - 1])
@pytest.mark.parametrize("random", [b"\0" * 10, b"\xff" * 10, bytes(range(10))])
@pytest.mark.usefixtures("empty_pool")
def test_id_is_time_then_randomness_in_base32(millis: int, random: bytes) -> None:
    with (
        mock.patch("time.time_ns", return_value=millis * 1_000_000),
        mock.patch("os.urandom", _repeating(random)),
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


@pytest.mark.usefixtures("empty_pool")
def test_random_bytes_are_read_ahead_and_each_used_once() -> None:
    """One read from the OS serves many ids, each taking the next ten bytes of it."""
    stream = bytes(range(256)) * 16
    reads = mock.Mock(side_effect=lambda n: stream[:n])
    per_read = ids._POOL_BYTES // ids._RANDOM_BYTES
    with mock.patch("os.urandom", reads):
        made = [new_id("evt") for _ in range(per_read + 1)]
    assert reads.call_count == 2  # the second read for the id past the first read
    randoms = [m[-16:] for m in made]
    assert randoms[:per_read] == [
        _digits(int.from_bytes(stream[i * 10 : i * 10 + 10], "big"), 16) for i in range(per_read)
    ]
    assert randoms[per_read] == randoms[0]  # (the mock's second read repeats the first)


def test_threads_do_not_share_random_bytes() -> None:
    made: list[str] = []
    lock = threading.Lock()

    def make() -> None:
        batch = [new_id("evt")[-16:] for _ in range(500)]
        with lock:
            made.extend(batch)

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == 2000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_reuse_its_parents_random_bytes() -> None:
    new_id("evt")  # the pool holds bytes the parent has not used yet
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        try:
            os.write(write, new_id("evt").encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert status == 0
    assert looks_like_id(child, "evt")
    assert child[-16:] != new_id("evt")[-16:]
