"""Proofs read from the database (cached complete subtrees) equal the reference proofs
computed from all the leaves, for every kind of range; the lazy stored-leaf sequence."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from audit import proofs
from audit import repository as repo
from audit.merkle import (
    consistency_proof,
    consistency_proof_from,
    inclusion_proof,
    inclusion_proof_from,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from audit.proofs import NodeCache, StoredLeaves, TreeReader
from tests.audit.support import add_events, drop_append_only_guards, fresh_app, run_sql


@pytest.mark.parametrize(("tile", "bulk"), [(256, 1 << 16), (4, 16)])
def test_database_proofs_equal_the_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tile: int, bulk: int
) -> None:
    monkeypatch.setattr(proofs, "TILE", tile)
    monkeypatch.setattr(proofs, "_BULK", bulk)
    rnd = random.Random(tile)
    with fresh_app(tmp_path, f"proofs{tile}") as fresh:
        add_events(fresh.sessionmaker, 601)
        size = fresh.seal_all(batch_size=5000)
        cache = NodeCache()
        with fresh.sessionmaker() as session:
            leaves = repo.leaf_hashes(session, 0, size)
            sizes = sorted({1, 2, 3, 255, 256, 257, 512, size, *rnd.sample(range(1, size), 12)})
            for n in sizes:
                reader = TreeReader(session, cache, n)
                assert reader.subtree(0, n) == root_hash(leaves[:n])
                for index in {0, n - 1, rnd.randrange(n)}:
                    proof = inclusion_proof_from(index, n, reader.subtree)
                    assert proof == inclusion_proof(index, leaves[:n])
                    assert verify_inclusion(index, n, leaves[index], proof, root_hash(leaves[:n]))
                for old in {1, n // 2 or 1, n, rnd.randrange(1, n + 1)}:
                    proof = consistency_proof_from(old, n, reader.subtree)
                    assert proof == consistency_proof(old, n, leaves)
                    assert verify_consistency(
                        old, n, root_hash(leaves[:old]), root_hash(leaves[:n]), proof
                    )
        assert len(cache) > 0  # complete subtrees were cached and reused


def test_missing_leaves_are_noticed(tmp_path: Path) -> None:
    with fresh_app(tmp_path, "holes") as fresh:
        add_events(fresh.sessionmaker, 10)
        fresh.seal_all()
        drop_append_only_guards(fresh.url)
        run_sql(fresh.url, "DELETE FROM audit_log WHERE seq = 4")
        with fresh.sessionmaker() as session:
            reader = TreeReader(session, NodeCache(), 10)
            with pytest.raises(LookupError):
                reader.subtree(0, 10)
            stored = StoredLeaves(session, 12, chunk=4)
            assert len(stored) == 12
            assert stored[3] == b""  # the deleted entry: positions never shift
            assert len(stored[4]) == 32
            assert stored[10] == stored[11] == b""  # beyond the log
            assert stored[-1] == b""
            assert [len(h) for h in stored[2:6]] == [32, 0, 32, 32]
            with pytest.raises(IndexError):
                stored[12]
