"""RFC 9162 Merkle hashing, proofs and the compact range, against the RFC's own definitions."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    subtree_root,
    verify_consistency,
    verify_inclusion,
)

# Certificate Transparency's reference entries and the root for each size 1..8
# (RFC 6962 test vectors, as published by google/certificate-transparency and
# transparency-dev/merkle).
CT_ENTRIES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_LEAVES = [leaf_hash(e) for e in CT_ENTRIES]
CT_INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
CT_CONSISTENCY = [
    (
        2,
        8,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]

N = 40
LEAVES = [leaf_hash(i.to_bytes(2, "big") * (i % 5)) for i in range(N)]


# --- RFC 9162 section 2.1, transcribed literally (recursive, slicing) ---------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    """MTH over leaf hashes."""
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return d[0]
    k = _k(n)
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def ref_proof(m: int, d: list[bytes]) -> list[bytes]:
    return ref_subproof(m, d, True)


def _flip(h: bytes, bit: int = 0) -> bytes:
    return bytes([h[0] ^ (1 << bit)]) + h[1:]


# --- hashing -------------------------------------------------------------------


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_hash([]) == EMPTY_ROOT
    assert CompactRange().root() == EMPTY_ROOT


def test_domain_separation_prefixes() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    a, b = LEAVES[0], LEAVES[1]
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert node_hash(a, b) != node_hash(b, a)


@pytest.mark.parametrize("size", range(1, 9))
def test_known_answer_roots(size: int) -> None:
    assert root_hash(CT_LEAVES[:size]).hex() == CT_ROOTS[size - 1]
    assert CompactRange.from_leaves(CT_LEAVES[:size]).root().hex() == CT_ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "proof"), CT_INCLUSION)
def test_known_answer_inclusion(index: int, size: int, proof: list[str]) -> None:
    assert [p.hex() for p in inclusion_proof(index, CT_LEAVES[:size])] == proof
    root = bytes.fromhex(CT_ROOTS[size - 1])
    assert verify_inclusion(index, size, CT_LEAVES[index], [bytes.fromhex(p) for p in proof], root)


@pytest.mark.parametrize(("old", "new", "proof"), CT_CONSISTENCY)
def test_known_answer_consistency(old: int, new: int, proof: list[str]) -> None:
    assert [p.hex() for p in consistency_proof(old, new, CT_LEAVES)] == proof
    assert verify_consistency(
        old,
        new,
        bytes.fromhex(CT_ROOTS[old - 1]),
        bytes.fromhex(CT_ROOTS[new - 1]),
        [bytes.fromhex(p) for p in proof],
    )


def test_roots_match_the_recursive_definition_for_every_size() -> None:
    rng = CompactRange()
    assert rng.root() == ref_mth([])
    for size in range(1, N + 1):
        expected = ref_mth(LEAVES[:size])
        rng.append(LEAVES[size - 1])
        assert root_hash(LEAVES[:size]) == expected, size
        assert rng.root() == expected, size
        assert rng.size == size
        assert len(rng.hashes) == size.bit_count()


def test_subtree_root_of_every_range() -> None:
    for start in range(N + 1):
        for end in range(start, N + 1):
            assert subtree_root(LEAVES, start, end) == ref_mth(LEAVES[start:end])
    # Any Sequence works, not only lists.
    assert subtree_root(tuple(LEAVES), 3, 17) == ref_mth(LEAVES[3:17])


@pytest.mark.parametrize(("start", "end"), [(-1, 2), (3, 2), (0, N + 1)])
def test_subtree_root_rejects_bad_ranges(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="bad range"):
        subtree_root(LEAVES, start, end)


# --- inclusion -----------------------------------------------------------------


def test_inclusion_proofs_for_every_index_and_size() -> None:
    for size in range(1, N + 1):
        tree = LEAVES[:size]
        root = ref_mth(tree)
        for index in range(size):
            proof = inclusion_proof(index, tree)
            assert proof == ref_path(index, tree), (index, size)
            assert verify_inclusion(index, size, tree[index], proof, root)
            for j in range(len(proof)):
                bad = [*proof]
                bad[j] = _flip(bad[j], j % 8)
                assert not verify_inclusion(index, size, tree[index], bad, root), (index, size, j)
            assert not verify_inclusion(index, size, _flip(tree[index]), proof, root)
            assert not verify_inclusion(index, size, tree[index], proof, _flip(root))
            assert not verify_inclusion(index, size, tree[index], [*proof, root], root)
            if proof:
                assert not verify_inclusion(index, size, tree[index], proof[:-1], root)
            if size > 1:
                other = (index + 1) % size
                assert not verify_inclusion(other, size, tree[index], proof, root)
            if len(ref_path(index, LEAVES[: size + 1])) != len(proof):
                # The proof is bound to the tree size, up to trees of the same shape.
                assert not verify_inclusion(index, size + 1, tree[index], proof, root)


def test_inclusion_rejects_out_of_range_and_malformed_input() -> None:
    root = root_hash(LEAVES[:5])
    proof = inclusion_proof(2, LEAVES[:5])
    assert not verify_inclusion(5, 5, LEAVES[2], proof, root)
    assert not verify_inclusion(-1, 5, LEAVES[2], proof, root)
    assert not verify_inclusion(2, 5, LEAVES[2][:31], proof, root)
    assert not verify_inclusion(2, 5, LEAVES[2], [p + b"\x00" for p in proof], root)
    with pytest.raises(ValueError, match="outside"):
        inclusion_proof(5, LEAVES[:5])
    with pytest.raises(ValueError, match="outside"):
        inclusion_proof(0, [])


def test_single_leaf_tree() -> None:
    assert inclusion_proof(0, LEAVES[:1]) == []
    assert verify_inclusion(0, 1, LEAVES[0], [], LEAVES[0])
    assert not verify_inclusion(0, 1, LEAVES[1], [], LEAVES[0])


# --- consistency ----------------------------------------------------------------


def test_consistency_proofs_for_every_pair_of_sizes() -> None:
    for new in range(1, N + 1):
        new_root = ref_mth(LEAVES[:new])
        for old in range(1, new + 1):
            old_root = ref_mth(LEAVES[:old])
            proof = consistency_proof(old, new, LEAVES)
            assert proof == (ref_proof(old, LEAVES[:new]) if old < new else []), (old, new)
            assert verify_consistency(old, new, old_root, new_root, proof), (old, new)
            for j in range(len(proof)):
                bad = [*proof]
                bad[j] = _flip(bad[j], (j + 3) % 8)
                assert not verify_consistency(old, new, old_root, new_root, bad), (old, new, j)
            if old < new:
                assert not verify_consistency(old, new, _flip(old_root), new_root, proof)
                assert not verify_consistency(old, new, old_root, _flip(new_root), proof)
                assert not verify_consistency(old, new, old_root, new_root, proof[:-1])
                assert not verify_consistency(old, new, old_root, new_root, [*proof, new_root])
                assert not verify_consistency(old, new, old_root, new_root, [])
            if old < new - 1 and len(ref_proof(old, LEAVES[: new - 1])) != len(proof):
                # The proof is bound to its sizes, up to trees of the same shape.
                assert not verify_consistency(old, new - 1, old_root, new_root, proof)


def test_consistency_edge_cases() -> None:
    root5 = root_hash(LEAVES[:5])
    assert consistency_proof(0, 5, LEAVES) == []
    assert verify_consistency(0, 5, EMPTY_ROOT, root5, [])
    assert not verify_consistency(0, 5, EMPTY_ROOT, root5, [root5])
    assert verify_consistency(5, 5, root5, root5, [])
    assert not verify_consistency(5, 5, root5, _flip(root5), [])
    assert not verify_consistency(5, 5, root5, root5, [root5])
    assert not verify_consistency(6, 5, root5, root5, [])
    with pytest.raises(ValueError, match="old_size"):
        consistency_proof(6, 5, LEAVES)
    with pytest.raises(ValueError, match="old_size"):
        consistency_proof(1, N + 1, LEAVES)


# --- compact range ---------------------------------------------------------------


def test_compact_range_serialises_and_resumes() -> None:
    for cut in range(N + 1):
        head = CompactRange.from_leaves(LEAVES[:cut])
        saved_size, saved = head.size, head.to_hex()
        assert all(isinstance(h, str) and len(h) == 64 for h in saved)
        resumed = CompactRange.from_hex(saved_size, saved)
        assert resumed == head
        assert resumed.root() == ref_mth(LEAVES[:cut])
        resumed.extend(LEAVES[cut:])
        assert resumed.root() == ref_mth(LEAVES)
        assert head.size == cut  # resuming copied, it did not share state


def test_compact_range_copy_is_independent() -> None:
    a = CompactRange.from_leaves(LEAVES[:7])
    b = a.copy()
    b.append(LEAVES[7])
    assert a.size == 7
    assert a.root() == ref_mth(LEAVES[:7])
    assert b.root() == ref_mth(LEAVES[:8])
    assert a != b
    assert "size=7" in repr(a)


@pytest.mark.parametrize(
    ("size", "hashes", "match"),
    [
        (5, ["00" * 32], "has 2 hashes"),
        (4, ["00" * 32, "00" * 32], "has 1 hashes"),
        (1, ["00" * 31], "32 bytes"),
        (-1, [], ">= 0"),
    ],
)
def test_compact_range_refuses_a_bad_frontier(size: int, hashes: list[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CompactRange.from_hex(size, hashes)


def test_compact_range_refuses_a_bad_leaf_hash() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        CompactRange().append(b"short")


# --- properties -------------------------------------------------------------------

leaf_lists = st.lists(st.binary(min_size=0, max_size=8), min_size=1, max_size=150).map(
    lambda entries: [leaf_hash(e) for e in entries]
)


@settings(max_examples=60, deadline=None)
@given(leaves=leaf_lists, data=st.data())
def test_property_proofs_and_roots(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    root = ref_mth(leaves)
    assert root_hash(leaves) == root
    index = data.draw(st.integers(0, n - 1), label="index")
    proof = inclusion_proof(index, leaves)
    assert verify_inclusion(index, n, leaves[index], proof, root)
    old = data.draw(st.integers(1, n), label="old")
    old_root = root_hash(leaves[:old])
    cproof = consistency_proof(old, n, leaves)
    assert verify_consistency(old, n, old_root, root, cproof)
    if cproof:
        j = data.draw(st.integers(0, len(cproof) - 1), label="tampered element")
        cproof[j] = _flip(cproof[j])
        assert not verify_consistency(old, n, old_root, root, cproof)


@settings(max_examples=60, deadline=None)
@given(leaves=leaf_lists, data=st.data())
def test_property_compact_range_resume(leaves: list[bytes], data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(leaves)), label="cut")
    head = CompactRange.from_leaves(leaves[:cut])
    resumed = CompactRange.from_hex(head.size, head.to_hex())
    resumed.extend(leaves[cut:])
    assert resumed.root() == root_hash(leaves)


@settings(max_examples=40, deadline=None)
@given(leaves=leaf_lists, data=st.data())
def test_property_a_changed_leaf_changes_the_root(leaves: list[bytes], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(leaves) - 1), label="changed leaf")
    changed = [*leaves]
    changed[i] = _flip(changed[i], 7)
    assert root_hash(changed) != root_hash(leaves)
    # A proof of the old leaf does not carry over to the changed tree.
    proof = inclusion_proof(i, leaves)
    assert not verify_inclusion(i, len(leaves), leaves[i], proof, root_hash(changed))
