"""Audit trail throughput: sealing (events/s) and verification of 1,000,000 events.

Run: .venv/bin/python -m bench.audit_bench [--events 100000] [--verify 1000000]
         [--pg postgresql://postgres@127.0.0.1:5432/postgres]

* sealing: N events are bulk-inserted into a fresh database (SQLite file; PostgreSQL too
  with --pg, in a scratch database created and dropped here) and analysed, then one ``Sequencer``
  drains them in batches of 5,000: wall and CPU time, events/s. The same log is then
  verified from the database (``verify_database``, what ``POST /v1/audit/verify`` runs).
* offline verification: a bundle of M events shaped like real ones (about 420 bytes of
  canonical JSON each, checkpoints every 5,000 signed with Ed25519) is written, then
  ``verify_bundle`` checks it on one core, as ``creditshare audit verify --bundle`` does.

A one-off measurement, not a test.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url

from audit.bundle import BUNDLE_FORMAT, verify_bundle
from audit.canonical import event_leaf_hash
from audit.merkle import CompactRange
from audit.note import format_checkpoint, sign_note, verifier_key
from audit.queries import verify_database
from audit.sealer import Sequencer
from auth.keys import KeyStore
from service.crypto import load_keyring
from service.db.engine import make_engine
from service.db.migrate import upgrade
from service.db.session import make_sessionmaker
from service.ids import new_id
from service.models import AuditEvent
from service.settings import Settings

T = TypeVar("T")
ORIGIN = "bench.example/creditshare/audit"
MASTER = "bench-master-key-0123456789abcdefghijklmnopqrstuvwxyz"


def timed(label: str, count: int, fn: Callable[[], T]) -> T:
    w0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    print(
        f"{label:<44} {count:>9,} events  wall {wall:7.2f} s  cpu {cpu:7.2f} s  "
        f"{count / wall:>10,.0f} events/s"
    )
    return result


def event_row(i: int, at: datetime) -> dict[str, object]:
    return {
        "id": new_id("evt"),
        "occurred_at": at + timedelta(milliseconds=i),
        "actor_client_id": "cs_" + hashlib.sha256(str(i % 37).encode()).hexdigest()[:24],
        "actor_name": "某某电商平台",
        "actor_kind": "client",
        "action": "credit_check.create",
        "target_type": "credit_check",
        "target_id": new_id("chk"),
        "uscc": "91120101MA05JXN76P",
        "purpose": "ONBOARDING",
        "outcome": "success",
        "status": 201,
        "request_id": new_id("req"),
        "ip": "10.1.2.3",
        "details": {
            "method": "POST",
            "path": "/v1/credit-checks",
            "verdict": "CAUTION",
            "policy_version": "3",
            "reference": f"order-{i}",
        },
    }


def bench_sealing(url: str, label: str, events: int, data: Path) -> None:
    upgrade(url)
    engine = make_engine(url, pool_size=2)
    factory = make_sessionmaker(engine)
    settings = Settings(database_url=url, master_key=MASTER, data_dir=data)
    store = KeyStore(factory, load_keyring(settings), overlap_seconds=0)
    store.ensure()
    start = datetime.now(UTC)
    with factory() as session, session.begin():
        for offset in range(0, events, 10_000):
            rows = [event_row(i, start) for i in range(offset, min(events, offset + 10_000))]
            session.execute(insert(AuditEvent), rows)
    with engine.begin() as conn:  # as autovacuum would have by now on a live database
        conn.execute(text("ANALYZE"))
    sequencer = Sequencer(factory, store, ORIGIN, batch_size=5000, use_lease=True)
    sequencer.acquire_lease()
    timed(f"seal [{label}] batches of 5,000", events, sequencer.drain)
    with factory() as session:
        result = timed(
            f"verify from the database [{label}]",
            events,
            lambda: verify_database(session, store, ORIGIN),
        )
    assert result.ok, result
    engine.dispose()


def write_bundle(directory: Path, events: int, every: int = 5000) -> None:
    key = Ed25519PrivateKey.generate()
    rng = CompactRange()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    leaves = bytearray()
    with (
        (directory / "events.ndjson").open("wb") as out,
        (directory / "checkpoints.ndjson").open("wb") as heads,
    ):
        for i in range(events):
            row = event_row(i, start)
            document = {
                "id": row["id"],
                "seq": i + 1,
                "occurred_at": (start + timedelta(milliseconds=i)).strftime(
                    "%Y-%m-%dT%H:%M:%S.%fZ"
                ),
                "actor": {
                    "client_id": row["actor_client_id"],
                    "name": row["actor_name"],
                    "kind": "client",
                },
                "action": row["action"],
                "target": {"type": row["target_type"], "id": row["target_id"]},
                "uscc": row["uscc"],
                "purpose": row["purpose"],
                "outcome": row["outcome"],
                "status": row["status"],
                "request_id": row["request_id"],
                "ip": row["ip"],
                "details": row["details"],
            }
            leaf = event_leaf_hash(document)
            leaves += leaf
            rng.append(leaf)
            out.write(orjson.dumps(document) + b"\n")
            if rng.size % every == 0 or rng.size == events:
                note = sign_note(format_checkpoint(ORIGIN, rng.size, rng.root()), ORIGIN, key)
                heads.write(orjson.dumps({"size": rng.size, "signed_note": note}) + b"\n")
    (directory / "leaves.bin").write_bytes(bytes(leaves))
    (directory / "keys.json").write_text(
        orjson.dumps(
            {"origin": ORIGIN, "verifier_keys": {"k": verifier_key(ORIGIN, key.public_key())}}
        ).decode()
    )
    (directory / "manifest.json").write_text(
        orjson.dumps({"format": BUNDLE_FORMAT, "origin": ORIGIN, "size": events}).decode()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events to seal")
    parser.add_argument("--verify", type=int, default=1_000_000, help="events in the bundle")
    parser.add_argument("--pg", help="PostgreSQL server URL (a scratch database is made there)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    try:
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus")
        bench_sealing(f"sqlite:///{scratch / 'bench.db'}", "SQLite", args.events, scratch)
        if args.pg:
            import psycopg

            base = make_url(args.pg)
            admin = base.set(drivername="postgresql", database="postgres").render_as_string(
                hide_password=False
            )
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute("DROP DATABASE IF EXISTS audit_bench")
                conn.execute("CREATE DATABASE audit_bench")
            try:
                url = base.set(drivername="postgresql", database="audit_bench")
                bench_sealing(
                    url.render_as_string(hide_password=False), "PostgreSQL", args.events, scratch
                )
            finally:
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute("DROP DATABASE IF EXISTS audit_bench")
        bundle = scratch / "bundle"
        bundle.mkdir()
        timed("write a synthetic bundle", args.verify, lambda: write_bundle(bundle, args.verify))
        size = sum(p.stat().st_size for p in bundle.iterdir())
        print(f"bundle: {size / 1e6:,.0f} MB")
        result = timed(
            "verify the bundle offline (one core)", args.verify, lambda: verify_bundle(bundle)
        )
        assert result.ok, result
        assert result.checked == args.verify
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
