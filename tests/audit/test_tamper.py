"""Tampering with the stored trail by direct SQL, as an attacker with DDL rights would (the
append-only triggers dropped first), is reported with the first bad seq: by
``POST /v1/audit/verify``, by ``creditshare audit verify`` on the database, and by the
offline verifier on a bundle exported afterwards."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from audit.canonical import event_leaf_hash
from audit.merkle import CompactRange
from audit.note import format_checkpoint, sign_note
from service.cli import app as cli_app
from service.ids import new_id
from tests.audit.support import (
    FreshApp,
    add_events,
    drop_append_only_guards,
    fresh_app,
    is_postgres_url,
    query,
    run_sql,
)
from tests.conftest import MASTER_KEY
from tests.fixtures.databases import using_postgres

BATCH = 4  # a checkpoint every 4 events: seq 5..8 are the second batch
ATTACKER = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"attacker").digest())


@dataclass
class Log:
    fresh: FreshApp
    headers: dict[str, str]
    size: int
    tmp: Path

    @property
    def url(self) -> str:
        return self.fresh.url

    def pk_at(self, seq: int) -> int:
        return int(query(self.url, "SELECT event_pk FROM audit_log WHERE seq = :s", s=seq)[0][0])

    def env(self) -> dict[str, str]:
        return {
            "CREDITSHARE_DATABASE_URL": self.url,
            "CREDITSHARE_MASTER_KEY": MASTER_KEY,
            "CREDITSHARE_DATA_DIR": str(self.tmp / "cli-data"),
            "CREDITSHARE_PUBLIC_URL": "http://testserver",
            "CREDITSHARE_REDIS_URL": "",
        }


@pytest.fixture
def sealed_log(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Log]:
    label = "t" + hashlib.sha256(request.node.name.encode()).hexdigest()[:10]
    with fresh_app(tmp_path, label) as fresh:
        headers = fresh.factory.headers("audit:read")  # its token request is event 1
        add_events(fresh.sessionmaker, 20, details={"i": 1, "note": "原始"})
        size = fresh.sequencer(batch_size=BATCH).drain()
        assert size == 21
        drop_append_only_guards(fresh.url)
        yield Log(fresh, headers, size, tmp_path)


def _json_cast(url: str) -> str:
    return "CAST(:d AS json)" if is_postgres_url(url) else ":d"


def _event_row(log: Log, seq: int) -> dict[str, object]:
    rows = query(log.url, "SELECT * FROM audit_events WHERE pk = :pk", pk=log.pk_at(seq))
    return dict(rows[0]._mapping)


def _insert_event_sql(log: Log, pk: int, event_id: str) -> tuple[str, dict[str, object]]:
    """A forged event, a copy of seq 1 under a new pk and id."""
    columns = [k for k in _event_row(log, 1) if k not in ("pk", "id")]
    names = ", ".join(columns)
    sql = (
        f"INSERT INTO audit_events (pk, id, {names}) "
        f"SELECT :pk, :id, {names} FROM audit_events WHERE pk = :src"
    )
    return sql, {"pk": pk, "id": event_id, "src": log.pk_at(1)}


def _log_rows(log: Log, first: int) -> list[tuple[int, int, str, object]]:
    return [
        (r[0], r[1], r[2], r[3])
        for r in query(
            log.url,
            "SELECT seq, event_pk, leaf_hash, sealed_at FROM audit_log WHERE seq >= :s ORDER BY seq",
            s=first,
        )
    ]


def _rewrite_log_tail(log: Log, first: int, rows: list[tuple[int, int, str, object]]) -> None:
    run_sql(log.url, "DELETE FROM audit_log WHERE seq >= :s", s=first)
    for seq, pk, leaf, sealed_at in rows:
        run_sql(
            log.url,
            "INSERT INTO audit_log (seq, event_pk, leaf_hash, sealed_at) VALUES (:s, :p, :l, :t)",
            s=seq,
            p=pk,
            l=leaf,
            t=sealed_at,
        )


def _max_pk(log: Log) -> int:
    return int(query(log.url, "SELECT max(pk) FROM audit_events")[0][0])


# ---- the attacks --------------------------------------------------------------------------


def alter_status(log: Log) -> int:
    run_sql(log.url, "UPDATE audit_events SET status = 200 WHERE pk = :pk", pk=log.pk_at(6))
    run_sql(log.url, "UPDATE audit_events SET outcome = 'denied' WHERE pk = :pk", pk=log.pk_at(6))
    return 6


def alter_details(log: Log) -> int:
    run_sql(
        log.url,
        f"UPDATE audit_events SET details = {_json_cast(log.url)} WHERE pk = :pk",
        d='{"i": 1, "note": "篡改"}',
        pk=log.pk_at(13),
    )
    return 13


def alter_actor(log: Log) -> int:
    run_sql(
        log.url,
        "UPDATE audit_events SET actor_client_id = 'someone-else' WHERE pk = :pk",
        pk=log.pk_at(21),
    )
    return 21


def delete_event(log: Log) -> int:
    pk = log.pk_at(7)
    run_sql(
        log.url,
        "DELETE FROM audit_log WHERE seq = 7",
        "DELETE FROM audit_events WHERE pk = :pk",
        pk=pk,
    )
    return 7


def delete_log_entry(log: Log) -> int:
    run_sql(log.url, "DELETE FROM audit_log WHERE seq = 10")
    return 10


def insert_by_relinking(log: Log) -> int:
    """A forged event slipped in at seq 6: the entries from 6 on point one event later,
    the stored leaf hashes stay where they were."""
    pk = _max_pk(log) + 100
    sql, params = _insert_event_sql(log, pk, new_id("evt"))
    run_sql(log.url, sql, **params)
    tail = _log_rows(log, 6)
    pks = [pk] + [row[1] for row in tail]
    rows = [(seq, pks[i], leaf, at) for i, (seq, _pk, leaf, at) in enumerate(tail)]
    last = tail[-1]
    rows.append((last[0] + 1, pks[-1], last[2], last[3]))
    _rewrite_log_tail(log, 6, rows)
    return 6


def insert_by_renumbering(log: Log) -> int:
    """A forged event at seq 6 with its own correct leaf hash, later entries renumbered with
    theirs: the stored leaves no longer reproduce the signed roots, so the verifier can
    only bound the damage to the batch that starts at the last good checkpoint (seq 5)."""
    pk = _max_pk(log) + 100
    event_id = new_id("evt")
    sql, params = _insert_event_sql(log, pk, event_id)
    run_sql(log.url, sql, **params)
    tail = _log_rows(log, 6)
    from audit.documents import event_document
    from audit.repository import event_by_id

    with log.fresh.sessionmaker() as session:
        forged = event_by_id(session, event_id)
        leaf = event_leaf_hash(event_document(forged)).hex()
    rows = [(6, pk, leaf, tail[0][3])] + [(seq + 1, p, lh, at) for seq, p, lh, at in tail]
    _rewrite_log_tail(log, 6, rows)
    return 5


def append_unsigned(log: Log) -> int:
    """An entry past the latest checkpoint (no bundle holds it: a bundle ends there)."""
    pk = _max_pk(log) + 100
    sql, params = _insert_event_sql(log, pk, new_id("evt"))
    run_sql(log.url, sql, **params)
    run_sql(
        log.url,
        "INSERT INTO audit_log (seq, event_pk, leaf_hash, sealed_at) "
        "SELECT :s, :p, leaf_hash, sealed_at FROM audit_log WHERE seq = 1",
        s=log.size + 1,
        p=pk,
    )
    return log.size + 1


def reorder(log: Log) -> int:
    (a, b) = _log_rows(log, 3)[:2]
    run_sql(log.url, "DELETE FROM audit_log WHERE seq IN (3, 4)")
    for seq, pk, leaf, at in ((3, b[1], a[2], a[3]), (4, a[1], b[2], b[3])):
        run_sql(
            log.url,
            "INSERT INTO audit_log (seq, event_pk, leaf_hash, sealed_at) VALUES (:s, :p, :l, :t)",
            s=seq,
            p=pk,
            l=leaf,
            t=at,
        )
    return 3


def _forged_checkpoint(log: Log, size: int, root: bytes) -> str:
    origin = log.fresh.origin
    return sign_note(format_checkpoint(origin, size, root), origin, ATTACKER)


def forged_checkpoint(log: Log) -> int:
    """An event appended with a checkpoint signed by a key that is not the log's."""
    append_unsigned(log)
    leaves = [bytes.fromhex(r[2]) for r in _log_rows(log, 1)]
    rng = CompactRange.from_leaves(leaves)
    run_sql(
        log.url,
        "INSERT INTO audit_checkpoints (size, root_hash, frontier, note, key_id, created_at) "
        f"SELECT :size, :root, {_json_cast(log.url)}, :note, key_id, created_at "
        "FROM audit_checkpoints WHERE size = 4",
        size=rng.size,
        root=rng.root().hex(),
        d=json.dumps(rng.to_hex()),
        note=_forged_checkpoint(log, rng.size, rng.root()),
    )
    return log.size + 1


def replaced_checkpoint(log: Log) -> int:
    """A genuine checkpoint's note replaced by one signed with another key."""
    run_sql(
        log.url,
        "UPDATE audit_checkpoints SET note = :note WHERE size = 8",
        note=_forged_checkpoint(log, 8, bytes(32)),
    )
    return 5


def rewritten_history(log: Log) -> int:
    """An event altered *and* its stored leaf hash recomputed: only the signed roots catch it,
    which bounds it to its batch (seq 5..8)."""
    alter_status(log)
    from audit.documents import event_document
    from audit.repository import sealed_events

    with log.fresh.sessionmaker() as session:
        (row,) = sealed_events(session, 6, 6)
        leaf = event_leaf_hash(event_document(row)).hex()
    run_sql(log.url, "UPDATE audit_log SET leaf_hash = :l WHERE seq = 6", l=leaf)
    return 5


ATTACKS: dict[str, Callable[[Log], int]] = {
    f.__name__: f
    for f in (
        alter_status,
        alter_details,
        alter_actor,
        delete_event,
        delete_log_entry,
        insert_by_relinking,
        insert_by_renumbering,
        append_unsigned,
        reorder,
        forged_checkpoint,
        replaced_checkpoint,
        rewritten_history,
    )
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_tampering_is_reported_with_the_first_bad_seq(sealed_log: Log, attack: str) -> None:
    runner = CliRunner()
    intact = runner.invoke(cli_app, ["audit", "verify"], env=sealed_log.env())
    assert intact.exit_code == 0, intact.output
    assert json.loads(intact.stdout)["checked"] == sealed_log.size

    expected = ATTACKS[attack](sealed_log)
    in_bundle = attack != "append_unsigned"

    api = sealed_log.fresh.client.post("/v1/audit/verify", headers=sealed_log.headers)
    assert api.status_code == 200, api.text
    result = api.json()
    assert result["ok"] is False, result
    assert result["first_bad_seq"] == expected, result
    assert result["problem"]

    db = runner.invoke(cli_app, ["audit", "verify"], env=sealed_log.env())
    assert db.exit_code == 1, db.output
    assert json.loads(db.stdout)["first_bad_seq"] == expected

    bundle = sealed_log.tmp / "bundle"
    exported = runner.invoke(
        cli_app, ["audit", "export", "--out", str(bundle)], env=sealed_log.env()
    )
    assert exported.exit_code == 0, exported.output
    offline = runner.invoke(cli_app, ["audit", "verify", "--bundle", str(bundle)], env={})
    assert offline.exit_code == (1 if in_bundle else 0), offline.output
    assert json.loads(offline.stdout)["first_bad_seq"] == (expected if in_bundle else None)


def test_a_replaced_checkpoint_is_called_not_authentic(sealed_log: Log) -> None:
    """The problem text says what kind of damage it is, for the person reading the report."""
    replaced_checkpoint(sealed_log)
    result = sealed_log.fresh.client.post("/v1/audit/verify", headers=sealed_log.headers).json()
    assert "not authentic" in result["problem"]


@pytest.mark.skipif(using_postgres(), reason="PostgreSQL's column types refuse such values")
@pytest.mark.parametrize(
    ("statement", "seq"),
    [
        ("UPDATE audit_events SET details = '{broken' WHERE pk = :pk", 9),
        ("UPDATE audit_events SET occurred_at = 'yesterday' WHERE pk = :pk", 14),
        ("UPDATE audit_events SET status = 'two hundred' WHERE pk = :pk", 3),
    ],
)
def test_unreadable_rows_are_reported_not_fatal(sealed_log: Log, statement: str, seq: int) -> None:
    run_sql(sealed_log.url, statement, pk=sealed_log.pk_at(seq))
    result = sealed_log.fresh.client.post("/v1/audit/verify", headers=sealed_log.headers).json()
    assert result["ok"] is False
    assert result["first_bad_seq"] == seq
    bundle = sealed_log.tmp / "bundle"
    runner = CliRunner()
    exported = runner.invoke(
        cli_app, ["audit", "export", "--out", str(bundle)], env=sealed_log.env()
    )
    assert exported.exit_code == 0, exported.output
    offline = runner.invoke(cli_app, ["audit", "verify", "--bundle", str(bundle)])
    assert offline.exit_code == 1
    assert json.loads(offline.stdout)["first_bad_seq"] == seq
