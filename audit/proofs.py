"""Reading the sealed Merkle tree from the database: proofs without rehashing the whole log.

Every hash a proof needs is the root of a node of the RFC 9162 tree. Complete
nodes of 256 leaves or more (the "tiles" of a tiled log) never change once the
log has grown past them, so ``NodeCache`` keeps their hashes for the life of
the process; a proof then costs O(log n) cached hashes plus at most a few
hundred stored leaves at the ragged right edge, instead of O(n).

Stored leaf hashes are not trusted here any more than anywhere else: a proof
built from tampered leaves simply fails to verify against the signed root.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Final

from sqlalchemy.orm import Session

from audit import repository as repo
from audit.merkle import EMPTY_ROOT, HASH_SIZE, LeafSequence, node_hash, subtree_root

__all__ = ["TILE", "NodeCache", "StoredLeaves", "TreeReader"]

TILE: Final = 256
"""Smallest complete subtree whose hash is cached."""
_BULK: Final = 1 << 16
"""Leaves read in one query when a large uncached subtree is first needed."""


class NodeCache:
    """Hashes of complete subtrees ``(start, size)`` with ``size >= TILE``, shared by threads."""

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self._nodes: dict[tuple[int, int], bytes] = {}
        self._max = max_entries
        self._lock = threading.Lock()

    def get(self, start: int, size: int) -> bytes | None:
        return self._nodes.get((start, size))

    def put(self, start: int, size: int, value: bytes) -> None:
        with self._lock:
            if len(self._nodes) >= self._max:
                self._nodes.clear()
            self._nodes[(start, size)] = value

    def __len__(self) -> int:
        return len(self._nodes)


class TreeReader:
    """``subtree(start, end)`` over the stored leaves of a log of ``size`` leaves."""

    def __init__(self, session: Session, cache: NodeCache, size: int) -> None:
        self.session = session
        self.cache = cache
        self.size = size

    def _leaves(self, start: int, end: int) -> list[bytes]:
        leaves = repo.leaf_hashes(self.session, start, end)
        if any(len(h) != HASH_SIZE for h in leaves):
            raise LookupError(f"the log is missing leaves in [{start}, {end})")
        return leaves

    def subtree(self, start: int, end: int) -> bytes:
        """MTH of leaves ``[start, end)``, from cached nodes where possible."""
        if not 0 <= start <= end <= self.size:
            raise ValueError(f"bad range [{start}, {end}) for a tree of {self.size}")
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if n >= TILE and n & (n - 1) == 0 and start % n == 0:
            return self._complete(start, n)
        if n <= TILE:
            return subtree_root(self._leaves(start, end), 0, n)
        k = 1 << ((n - 1).bit_length() - 1)
        return node_hash(self.subtree(start, start + k), self.subtree(start + k, end))

    def _complete(self, start: int, n: int) -> bytes:
        cached = self.cache.get(start, n)
        if cached is not None:
            return cached
        if n <= _BULK and self.cache.get(start, n // 2) is None:
            return self._fill(start, n)
        half = n // 2
        value = node_hash(self._complete(start, half), self._complete(start + half, half))
        self.cache.put(start, n, value)
        return value

    def _fill(self, start: int, n: int) -> bytes:
        """Read ``n`` leaves at once and cache every complete node of ``TILE`` leaves or more."""
        leaves = self._leaves(start, start + n)
        level = [subtree_root(leaves, i, i + TILE) for i in range(0, n, TILE)]
        width = TILE
        while True:
            for i, value in enumerate(level):
                self.cache.put(start + i * width, width, value)
            if len(level) == 1:
                return level[0]
            level = [node_hash(a, b) for a, b in zip(level[0::2], level[1::2], strict=True)]
            width *= 2


class StoredLeaves(LeafSequence):
    """The stored leaf hashes of seq ``1..size`` as a lazy sequence, read in chunks.

    What ``audit.verify.verify_log`` takes as ``stored_leaf_hashes``: it reads
    them in order, so one chunk at a time is kept. A missing or malformed stored
    entry reads as ``b""``, which the verifier reports as malformed.
    """

    def __init__(self, session: Session, size: int, chunk: int = 1 << 14) -> None:
        self._session = session
        self._size = size
        self._chunk = chunk
        self._start = -1
        self._items: list[bytes] = []

    def __len__(self) -> int:
        return self._size

    def _leaf(self, index: int) -> bytes:
        if not self._start <= index < self._start + len(self._items):
            self._start = index - index % self._chunk
            end = min(self._size, self._start + self._chunk)
            self._items = repo.leaf_hashes(self._session, self._start, end)
        return self._items[index - self._start]

    def __iter__(self) -> Iterator[bytes]:
        for i in range(self._size):
            yield self[i]
