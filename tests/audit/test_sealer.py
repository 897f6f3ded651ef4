"""The sequencer: gapless seq, the leaf of each event, checkpoints that extend one another,
crashes mid-batch, concurrent sequencers, the lease, late commits, key rotation, the worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from audit import repository as repo
from audit.canonical import event_leaf_hash
from audit.documents import event_document
from audit.merkle import CompactRange, root_hash
from audit.note import open_note, verifier_key
from audit.queries import verify_database
from audit.sealer import LEASE_NAME, SealingError, Sequencer, Watermark
from service.db.base import utcnow
from service.ids import new_id
from service.models import AuditCheckpoint, AuditEvent
from tests.audit.support import (
    FreshApp,
    add_events,
    drop_append_only_guards,
    event_count,
    fresh_app,
    fresh_database,
    log_state,
    run_sql,
    wait_sealed,
    wait_until,
)
from tests.conftest import MASTER_KEY


def _verify(fresh: FreshApp) -> None:
    with fresh.sessionmaker() as session:
        result = verify_database(session, fresh.key_store, fresh.origin)
    assert result.ok, result


def _assert_gapless(fresh: FreshApp, expected: int) -> None:
    seqs, pks = log_state(fresh.sessionmaker)
    assert seqs == list(range(1, expected + 1))
    assert len(set(pks)) == len(pks) == expected


def test_sealing_appends_gapless_leaves_and_signed_checkpoints(tmp_path: Path) -> None:
    with fresh_app(tmp_path, "seal") as fresh:
        before = event_count(fresh.sessionmaker)  # the app's own requests so far
        add_events(fresh.sessionmaker, 23, details={"float": 1.25, "text": "天津"})
        total = before + 23
        assert fresh.sequencer(batch_size=10).drain() == total
        _assert_gapless(fresh, total)
        with fresh.sessionmaker() as session:
            rows = repo.sealed_events(session, 1, total)
            heads = list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.size)))
        leaves = [event_leaf_hash(event_document(row)) for row in rows]
        assert [row.leaf_hash for row in rows] == [leaf.hex() for leaf in leaves]
        sizes = [h.size for h in heads]
        assert sizes == [*range(10, total, 10), total]
        keys = [verifier_key(fresh.origin, k) for k in fresh.key_store.view().audit_public.values()]
        for head in heads:
            checkpoint = open_note(head.note, keys, origin=fresh.origin)
            assert checkpoint.size == head.size
            assert (
                checkpoint.root == root_hash(leaves[: head.size]) == bytes.fromhex(head.root_hash)
            )
            assert CompactRange.from_hex(head.size, head.frontier) == CompactRange.from_leaves(
                leaves[: head.size]
            )
        # Nothing left: another round seals nothing and signs nothing new.
        assert fresh.sequencer().drain() == 0
        with fresh.sessionmaker() as session:
            assert len(repo.checkpoints(session)) == len(heads)
        _verify(fresh)


def test_a_crash_mid_batch_leaves_nothing_and_the_next_batch_resumes(tmp_path: Path) -> None:
    with fresh_app(tmp_path, "crash") as fresh:
        add_events(fresh.sessionmaker, 12)
        assert fresh.sequencer(batch_size=5).seal_batch().sealed == 5
        calls: list[tuple[int, int]] = []

        def crash(first: int, last: int) -> None:
            calls.append((first, last))
            raise RuntimeError("killed mid-batch")

        crashing = fresh.sequencer(batch_size=5, before_commit=crash)
        with pytest.raises(RuntimeError, match="killed mid-batch"):
            crashing.seal_batch()
        assert calls == [(6, 10)]
        _assert_gapless(fresh, 5)  # the failed batch left no entry and no checkpoint
        with fresh.sessionmaker() as session:
            assert repo.latest_checkpoint(session).size == 5  # type: ignore[union-attr]
        total = event_count(fresh.sessionmaker)
        assert fresh.sequencer(batch_size=5).drain() == total - 5
        _assert_gapless(fresh, total)
        _verify(fresh)


def test_concurrent_sequencers_never_duplicate_or_skip(tmp_path: Path) -> None:
    """Four sequencers race without a lease while events keep arriving: the lock and the
    constraints alone keep the log gapless, each event sealed exactly once."""
    with fresh_app(tmp_path, "race") as fresh:
        stop = threading.Event()
        errors: list[BaseException] = []

        def writer() -> None:
            try:
                for _ in range(30):
                    add_events(fresh.sessionmaker, 7)
            except BaseException as exc:
                errors.append(exc)

        def sealer(n: int) -> None:
            sequencer = fresh.sequencer(batch_size=3 + n, holder=f"racer-{n}")
            try:
                while not stop.is_set():
                    sequencer.drain()
            except BaseException as exc:
                errors.append(exc)

        writers = [threading.Thread(target=writer) for _ in range(2)]
        sealers = [threading.Thread(target=sealer, args=(n,)) for n in range(4)]
        for t in writers + sealers:
            t.start()
        for t in writers:
            t.join()
        total = event_count(fresh.sessionmaker)
        wait_until(lambda: len(log_state(fresh.sessionmaker)[0]) == total, 20, "all sealed")
        stop.set()
        for t in sealers:
            t.join()
        assert not errors, errors
        _assert_gapless(fresh, total)
        _verify(fresh)


def test_only_the_lease_holder_seals_and_a_standby_takes_over(tmp_path: Path) -> None:
    with fresh_app(tmp_path, "lease") as fresh:
        # 2 s: long enough for the steps below on a loaded CI machine, short enough to wait.
        leader = fresh.sequencer(use_lease=True, holder="leader", lease_seconds=2.0)
        standby = fresh.sequencer(use_lease=True, holder="standby", lease_seconds=30)
        assert leader.acquire_lease()
        assert not standby.acquire_lease()
        add_events(fresh.sessionmaker, 3)
        assert standby.seal_batch().sealed == 0  # fenced out: not the holder
        assert log_state(fresh.sessionmaker)[0] == []
        assert leader.seal_batch().sealed > 0
        # The leader stalls past its lease; the standby takes over and the old leader's
        # next batch is abandoned, not interleaved.
        wait_until(standby.acquire_lease, 5, "the lease to expire")
        add_events(fresh.sessionmaker, 2)
        assert leader.seal_batch().sealed == 0
        assert not leader.acquire_lease()
        assert standby.seal_batch().sealed == 2
        standby.release_lease()
        assert leader.acquire_lease()  # released: no need to wait for expiry
        with fresh.sessionmaker() as session:
            holder = repo.lease_holder(session, LEASE_NAME)
        assert holder is not None
        assert holder[0] == "leader"
        _assert_gapless(fresh, event_count(fresh.sessionmaker))
        _verify(fresh)


def test_a_late_commit_with_a_lower_pk_is_still_sealed(tmp_path: Path) -> None:
    """pks are allocated before commit, so a lower pk can appear after higher ones were sealed:
    the watermark that keeps the unsealed scan short must not pass young events."""
    with fresh_app(tmp_path, "late") as fresh:
        (template,) = add_events(fresh.sessionmaker, 1)
        eager = Watermark(grace_seconds=0, rescan_seconds=3600)
        sequencer = fresh.sequencer(watermark=eager)
        sequencer.drain()
        with fresh.sessionmaker() as session:
            row = session.execute(select(AuditEvent).where(AuditEvent.id == template)).scalar_one()
            values = {c.key: getattr(row, c.key) for c in AuditEvent.__table__.columns}
        top = values["pk"]
        assert eager.value == top

        def write(pk: int) -> None:
            with fresh.sessionmaker() as session, session.begin():
                session.execute(
                    insert(AuditEvent).values(
                        **{**values, "pk": pk, "id": new_id("evt"), "occurred_at": utcnow()}
                    )
                )

        write(top + 10)
        assert sequencer.drain() == 1
        assert eager.value == top + 10
        write(top + 5)  # its transaction "committed late"
        assert sequencer.drain() == 0  # a watermark without grace passed it (until a rescan)
        assert fresh.sequencer().drain() == 1  # the default grace never passes a young event
        _assert_gapless(fresh, 3)
        assert Watermark(rescan_seconds=0).value == 0
        _verify(fresh)


def test_it_refuses_to_extend_a_log_it_does_not_recognise(tmp_path: Path) -> None:
    with fresh_app(tmp_path, "refuse") as fresh:
        add_events(fresh.sessionmaker, 4)
        fresh.sequencer(batch_size=2).drain()
        add_events(fresh.sessionmaker, 1)
        drop_append_only_guards(fresh.url)
        run_sql(
            fresh.url,
            "DELETE FROM audit_checkpoints WHERE size = (SELECT max(size) FROM audit_checkpoints)",
        )
        with pytest.raises(SealingError, match="latest checkpoint seals"):
            fresh.sequencer().seal_batch()
        run_sql(fresh.url, "DELETE FROM audit_log", "DELETE FROM audit_checkpoints WHERE size > 0")
        add_events(fresh.sessionmaker, 1)
        run_sql(
            fresh.url,
            "INSERT INTO audit_log (seq, event_pk, leaf_hash, sealed_at) SELECT 1, min(pk), 'ab', '2026-01-01 00:00:00' FROM audit_events",
        )
        with pytest.raises(SealingError, match="no checkpoint"):
            fresh.sequencer().seal_batch()


def test_the_log_keeps_its_origin_and_survives_key_rotation(tmp_path: Path) -> None:
    with fresh_app(tmp_path, "rotate") as fresh:
        add_events(fresh.sessionmaker, 3)
        old = Sequencer(
            fresh.sessionmaker, fresh.key_store, "old.example/creditshare/audit", use_lease=False
        )
        old.drain()
        first_kid = fresh.key_store.view().audit_signer[0]  # type: ignore[index]
        fresh.key_store.rotate("audit")
        add_events(fresh.sessionmaker, 3)
        fresh.seal_all()  # the app's origin is testserver/...; the log keeps old.example
        with fresh.sessionmaker() as session:
            heads = repo.checkpoints(session)
        assert {h.note.split("\n")[0] for h in heads} == {"old.example/creditshare/audit"}
        assert heads[0].key_id == first_kid != heads[-1].key_id
        _verify(fresh)
        headers = fresh.factory.headers("audit:read")
        latest = fresh.client.get("/v1/audit/checkpoints/latest", headers=headers).json()
        assert latest["origin"] == "old.example/creditshare/audit"
        assert len(latest["verifier_keys"]) == 2
        open_note(
            heads[0].note, [k for k in latest["verifier_keys"] if k != latest["verifier_key"]]
        )
        verified = fresh.client.post("/v1/audit/verify", headers=headers).json()
        assert verified["ok"], verified


def _worker_env(url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREDITSHARE_")}
    env.update(
        CREDITSHARE_DATABASE_URL=url,
        CREDITSHARE_MASTER_KEY=MASTER_KEY,
        CREDITSHARE_DATA_DIR=str(data_dir),
        CREDITSHARE_PUBLIC_URL="http://testserver",
        CREDITSHARE_AUDIT_SEAL_INTERVAL="0.1",
        CREDITSHARE_LOG_LEVEL="INFO",
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
    )
    return env


def _holder_pid(factory: sessionmaker[Session]) -> int | None:
    with factory() as session:
        lease = repo.lease_holder(session, LEASE_NAME)
    if lease is None or lease[1] <= utcnow():
        return None
    return int(lease[0].split(":")[1])


def test_workers_elect_one_sequencer_and_hand_over_on_sigterm(tmp_path: Path) -> None:
    with fresh_database(tmp_path, "workers") as url:
        from tests.audit.support import standalone_parts

        engine, factory, _store = standalone_parts(url, tmp_path / "data")
        env = _worker_env(url, tmp_path / "data")
        command = [sys.executable, "-m", "service.cli", "worker"]
        procs = [
            subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)
        ]
        try:
            ids = add_events(factory, 50)
            wait_sealed(factory, ids, timeout=20)
            leader_pid = _holder_pid(factory)
            assert leader_pid in {p.pid for p in procs}
            leader = next(p for p in procs if p.pid == leader_pid)
            standby = next(p for p in procs if p.pid != leader_pid)
            leader.send_signal(signal.SIGTERM)
            assert leader.wait(timeout=20) == 0
            assert leader.stderr is not None
            log = leader.stderr.read()
            assert '"msg":"worker stopped"' in log
            assert '"msg":"became audit sequencer"' in log
            ids += add_events(factory, 30)
            wait_sealed(factory, ids, timeout=8)  # well within the 10 s lease: it was released
            assert _holder_pid(factory) == standby.pid
            standby.send_signal(signal.SIGINT)
            assert standby.wait(timeout=20) == 0
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
                if p.stderr is not None:
                    p.stderr.close()
        seqs, pks = log_state(factory)
        assert seqs == list(range(1, 81))
        assert len(set(pks)) == 80
        with factory() as session:
            assert session.scalar(text("SELECT count(*) FROM audit_checkpoints")) >= 2
        engine.dispose()
