"""RFC 9162 (formerly RFC 6962) Merkle tree hashing with SHA-256.

The audit log is a Certificate Transparency style append-only log: leaf ``i``
(0-based) is the hash of the event with ``seq == i + 1``, and a signed checkpoint
commits to the root of the first ``size`` leaves. Everything here follows
RFC 9162 section 2.1 so that any independent CT tooling can check our proofs:

* ``leaf_hash(d)  = SHA-256(0x00 || d)``
* ``node_hash(l, r) = SHA-256(0x01 || l || r)``
* ``MTH({}) = SHA-256()``; for ``n > 1`` the tree splits at ``k``, the largest
  power of two strictly smaller than ``n`` (not at the midpoint).

Functions that take ``leaf_hashes`` take the already hashed leaves (32 bytes
each), never the raw entries. Roots are computed level by level without
recursion, which for this tree shape gives exactly the RFC's recursive
definition: pairing nodes left to right and carrying an unpaired last node up
unchanged produces the same largest-power-of-two split at every level.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import overload

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "LeafSequence",
    "SubtreeRoot",
    "consistency_proof",
    "consistency_proof_from",
    "inclusion_proof",
    "inclusion_proof_from",
    "leaf_hash",
    "node_hash",
    "root_hash",
    "subtree_root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """Hash of one log entry: ``SHA-256(0x00 || data)``."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash of an interior node: ``SHA-256(0x01 || left || right)``."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The RFC's ``k``: the largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_root(leaf_hashes: Sequence[bytes], start: int, end: int) -> bytes:
    """MTH of the leaves ``leaf_hashes[start:end]`` (RFC 9162 ``MTH(D[start:end])``).

    Runs in O(end - start) hashes and memory; no recursion.
    """
    if not 0 <= start <= end <= len(leaf_hashes):
        raise ValueError(f"bad range [{start}, {end}) for {len(leaf_hashes)} leaves")
    if start == end:
        return EMPTY_ROOT
    level: list[bytes]
    if isinstance(leaf_hashes, list | tuple):
        level = list(leaf_hashes[start:end])
    else:
        level = [leaf_hashes[i] for i in range(start, end)]
    sha = _sha256
    while len(level) > 1:
        parents = [
            sha(b"\x01" + a + b).digest() for a, b in zip(level[0::2], level[1::2], strict=False)
        ]
        if len(level) & 1:
            parents.append(level[-1])
        level = parents
    return level[0]


def root_hash(leaves: Sequence[bytes]) -> bytes:
    """Root of the tree whose leaf hashes are ``leaves``; the empty tree is ``SHA-256("")``."""
    return subtree_root(leaves, 0, len(leaves))


class CompactRange:
    """The right frontier of a growing tree: enough state to append and get the root.

    It holds one hash per set bit of ``size`` -- the roots of the perfect
    subtrees that the first ``size`` leaves decompose into, largest (leftmost)
    first -- so at most 64 hashes for any log. Appending is O(log n) (amortised
    O(1)) and ``root()`` is O(log n). A sequencer stores ``size`` and
    ``to_hex()`` with each checkpoint and resumes with ``from_hex``; the leaves
    themselves are not needed to continue.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The frontier: perfect-subtree roots, leftmost (largest) first."""
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> None:
        """Add the next leaf hash (already ``leaf_hash``-ed, 32 bytes)."""
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError("a leaf hash is 32 bytes")
        hashes = self._hashes
        node = leaf_hash
        n = self._size
        # Each trailing 1 bit of the old size is a perfect subtree of the new
        # leaf's size that now has a right sibling: merge them.
        while n & 1:
            node = _sha256(b"\x01" + hashes.pop() + node).digest()
            n >>= 1
        hashes.append(node)
        self._size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append several leaf hashes in order."""
        for h in leaf_hashes:
            self.append(h)

    def root(self) -> bytes:
        """MTH of the leaves appended so far."""
        hashes = self._hashes
        if not hashes:
            return EMPTY_ROOT
        root = hashes[-1]
        for h in reversed(hashes[:-1]):
            root = _sha256(b"\x01" + h + root).digest()
        return root

    def copy(self) -> CompactRange:
        """An independent copy (appending to it leaves this one unchanged)."""
        other = CompactRange()
        other._size = self._size
        other._hashes = list(self._hashes)
        return other

    def to_hex(self) -> list[str]:
        """The frontier as lowercase hex strings (store together with ``size``)."""
        return [h.hex() for h in self._hashes]

    @classmethod
    def from_hex(cls, size: int, hashes: Sequence[str]) -> CompactRange:
        """Rebuild a range saved with ``size`` and ``to_hex()``.

        The number of hashes must be the number of set bits in ``size``; a
        frontier is not self-authenticating, so compare ``root()`` with the
        signed root of the checkpoint it was stored with before trusting it.
        """
        if size < 0:
            raise ValueError("size must be >= 0")
        if len(hashes) != size.bit_count():
            raise ValueError(
                f"a range of size {size} has {size.bit_count()} hashes, got {len(hashes)}"
            )
        decoded = [bytes.fromhex(h) for h in hashes]
        if any(len(h) != HASH_SIZE for h in decoded):
            raise ValueError("every frontier hash is 32 bytes")
        rng = cls()
        rng._size = size
        rng._hashes = decoded
        return rng

    @classmethod
    def from_leaves(cls, leaf_hashes: Iterable[bytes]) -> CompactRange:
        """A range holding ``leaf_hashes``."""
        rng = cls()
        rng.extend(leaf_hashes)
        return rng

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()})"


SubtreeRoot = Callable[[int, int], bytes]
"""``f(start, end)`` -> MTH of leaves ``[start, end)``: how the generic proofs read the tree."""


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 section 2.1.3.1 ``PATH(index, D[n])`` with ``n = len(leaf_hashes)``.

    Returned leaf-side first, as the RFC orders it. Iterative descent from the
    root; the sibling subtrees together span fewer than ``n`` leaves, so the
    cost is O(n) hashes.
    """
    return inclusion_proof_from(
        index, len(leaf_hashes), lambda lo, hi: subtree_root(leaf_hashes, lo, hi)
    )


def inclusion_proof_from(index: int, size: int, subtree: SubtreeRoot) -> list[bytes]:
    """``inclusion_proof`` for a tree of ``size`` leaves read through ``subtree(start, end)``.

    Every range asked for is a node of the RFC 9162 tree (its start a multiple
    of the largest power of two not above its length), so a store that caches
    node hashes (e.g. the complete subtrees of a tiled log) answers each in
    O(log n) instead of rehashing the leaves.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    proof: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            proof.append(subtree(mid, hi))
            hi = mid
        else:
            proof.append(subtree(lo, mid))
            lo = mid
    proof.reverse()
    return proof


def consistency_proof(old_size: int, new_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 section 2.1.4.1 ``PROOF(old_size, D[new_size])``.

    ``leaf_hashes`` must hold at least ``new_size`` leaves. The proof between a
    size and itself, or from the empty tree, is empty.
    """
    if not 0 <= old_size <= new_size <= len(leaf_hashes):
        raise ValueError(
            f"need 0 <= old_size ({old_size}) <= new_size ({new_size}) <= {len(leaf_hashes)}"
        )
    return consistency_proof_from(
        old_size, new_size, lambda lo, hi: subtree_root(leaf_hashes, lo, hi)
    )


def consistency_proof_from(old_size: int, new_size: int, subtree: SubtreeRoot) -> list[bytes]:
    """``consistency_proof`` for a tree read through ``subtree(start, end)`` (see
    ``inclusion_proof_from``)."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"need 0 <= old_size ({old_size}) <= new_size ({new_size})")
    if old_size in (0, new_size):
        return []
    proof: list[bytes] = []
    # Unrolled SUBPROOF(m, D[lo:hi], complete); elements are collected outermost
    # first and reversed at the end, since the recursion appends after recursing.
    lo, hi, m, complete = 0, new_size, old_size, True
    while True:
        if m == hi - lo:
            if not complete:
                proof.append(subtree(lo, hi))
            break
        k = _split(hi - lo)
        if m <= k:
            proof.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            proof.append(subtree(lo, lo + k))
            lo += k
            m -= k
            complete = False
    proof.reverse()
    return proof


def _all_hashes(items: Iterable[bytes]) -> bool:
    return all(isinstance(h, bytes) and len(h) == HASH_SIZE for h in items)


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2: does ``proof`` show leaf ``index`` is in the tree ``root``?"""
    if not 0 <= index < size or not _all_hashes([leaf_hash, root, *proof]):
        return False
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _sha256(b"\x01" + p + r).digest()
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = _sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2: is the tree ``old_root`` a prefix of the tree ``new_root``?

    Every tree extends the empty tree (the proof must then be empty), and a tree
    is consistent with itself only when the roots are equal and the proof empty.
    """
    if not 0 <= old_size <= new_size or not _all_hashes([old_root, new_root, *proof]):
        return False
    if old_size == 0:
        return not proof
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # an exact power of two: the old root is a node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _sha256(b"\x01" + c + fr).digest()
            sr = _sha256(b"\x01" + c + sr).digest()
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = _sha256(b"\x01" + sr + c).digest()
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0


class LeafSequence(Sequence[bytes]):
    """A read-only sequence of leaf hashes produced one index at a time.

    Subclasses give ``__len__`` and ``_leaf(index)`` (index already checked and
    non-negative); slicing, negative indices and bounds are handled here once.
    """

    def __len__(self) -> int:
        raise NotImplementedError

    def _leaf(self, index: int) -> bytes:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | Sequence[bytes]:
        size = len(self)
        if isinstance(index, slice):
            return [self._leaf(i) for i in range(*index.indices(size))]
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError(index)
        return self._leaf(index)
