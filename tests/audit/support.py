"""Shared helpers of the audit trail tests: fresh databases and apps, raw SQL, sealing, waiting."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from audit.context import RequestAudit
from audit.queries import verify_database
from audit.recorder import build_event
from audit.sealer import Sequencer, log_origin
from auth.keys import KeyStore
from service.app import create_app
from service.crypto import load_keyring
from service.db.engine import make_engine, normalize_url
from service.db.session import make_sessionmaker
from service.models import AuditEvent, AuditLogEntry
from service.settings import Settings
from tests.conftest import make_settings
from tests.fixtures.databases import drop_postgres, provision_database, using_postgres
from tests.fixtures.factories import Factory

APPEND_ONLY = ("audit_events", "audit_log", "audit_checkpoints")


def worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "gw0")


@dataclass
class FreshApp:
    """An app of its own on a database of its own (no embedded sequencer unless asked)."""

    url: str
    app: FastAPI
    client: TestClient
    factory: Factory
    settings: Settings

    @property
    def sessionmaker(self) -> sessionmaker[Session]:
        factory: sessionmaker[Session] = self.app.state.sessionmaker
        return factory

    @property
    def key_store(self) -> KeyStore:
        store: KeyStore = self.app.state.key_store
        return store

    @property
    def origin(self) -> str:
        return log_origin(self.settings.public_url)

    def sequencer(self, **kwargs: Any) -> Sequencer:
        kwargs.setdefault("use_lease", False)
        return Sequencer(self.sessionmaker, self.key_store, self.origin, **kwargs)

    def seal_all(self, batch_size: int = 5000) -> int:
        return self.sequencer(batch_size=batch_size).drain()


@contextmanager
def fresh_database(tmp_path: Path, label: str) -> Iterator[str]:
    url = provision_database(worker(), tmp_path, label)
    try:
        yield url
    finally:
        if using_postgres():
            drop_postgres(url)


@contextmanager
def fresh_app(tmp_path: Path, label: str, **overrides: object) -> Iterator[FreshApp]:
    overrides.setdefault("embedded_sequencer", False)
    with fresh_database(tmp_path, label) as url:
        settings = make_settings(url, None, tmp_path / f"data-{label}", **overrides)
        app = create_app(settings)
        try:
            with TestClient(app, raise_server_exceptions=False) as client:
                yield FreshApp(url, app, client, Factory(client), settings)
        finally:
            _settle(app)


def _settle(app: FastAPI) -> None:
    """Wait for the app's background threads, then close the pool once more.

    ``Runtime.close`` signals the auth directory's poller but does not join it,
    so a reload in flight can check a connection into the freshly disposed pool;
    left open, it would be reported as a leaked connection once the database is
    dropped (and fail whichever test runs then).
    """
    for thread in getattr(app.state.directory, "_threads", []):
        thread.join(timeout=5)
    app.state.engine.dispose()


def standalone_parts(url: str, data_dir: Path) -> tuple[Engine, sessionmaker[Session], KeyStore]:
    """Engine, sessions and key store on ``url`` without an app (as a worker process has)."""
    settings = make_settings(url, None, data_dir)
    engine = make_engine(url, pool_size=2)
    factory = make_sessionmaker(engine)
    store = KeyStore(factory, load_keyring(settings), overlap_seconds=0)
    store.ensure()
    return engine, factory, store


# ---- events -------------------------------------------------------------------------------


def add_events(
    factory: sessionmaker[Session],
    count: int,
    *,
    client_id: str | None = None,
    action: str = "test.event",
    uscc: str | None = None,
    purpose: str | None = None,
    status: int = 200,
    details: dict[str, object] | None = None,
    occurred_at: datetime | None = None,
    target: tuple[str, str] | None = None,
    name: str | None = "tester",
) -> list[str]:
    """Write ``count`` events directly (as the recorder does); returns their ids."""
    ids: list[str] = []
    with factory() as session, session.begin():
        for i in range(count):
            ctx = RequestAudit(request_id=f"req-test-{i}", ip="192.0.2.1", method="POST", path="/t")
            if client_id is not None:
                ctx.set_actor(client_id, name or "", "client")
            ctx.action = action
            ctx.uscc = uscc
            ctx.purpose = purpose
            if target is not None:
                ctx.target_type, ctx.target_id = target
            ctx.details.update(details or {"n": i})
            event = build_event(ctx, status, now=occurred_at)
            session.add(event)
            ids.append(event.id)
    return ids


def seq_of(factory: sessionmaker[Session], event_ids: list[str]) -> dict[str, int | None]:
    with factory() as session:
        rows = session.execute(
            select(AuditEvent.id, AuditLogEntry.seq)
            .outerjoin(AuditLogEntry, AuditLogEntry.event_pk == AuditEvent.pk)
            .where(AuditEvent.id.in_(event_ids))
        ).all()
    return {row.id: row.seq for row in rows}


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``predicate`` until true (bounded); fail the test with ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.05)


def wait_sealed(
    factory: sessionmaker[Session], event_ids: list[str], timeout: float = 10.0
) -> dict[str, int]:
    def sealed() -> bool:
        seqs = seq_of(factory, event_ids)
        return len(seqs) == len(event_ids) and all(s is not None for s in seqs.values())

    try:
        wait_until(sealed, timeout, f"{len(event_ids)} events to be sealed")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; {_sealing_state(factory)}") from None
    return {k: v for k, v in seq_of(factory, event_ids).items() if v is not None}


def _sealing_state(factory: sessionmaker[Session]) -> str:
    """What a timed-out wait saw: the lease and the backlog (to tell a stall from a slow run)."""
    with factory() as session:
        lease = session.execute(text("SELECT holder, expires_at FROM leases")).all()
        size = session.scalar(select(func.count()).select_from(AuditLogEntry))
        total = session.scalar(select(func.count()).select_from(AuditEvent))
    return f"lease={lease} sealed={size} events={total} now={datetime.now(UTC).isoformat()}"


def log_state(factory: sessionmaker[Session]) -> tuple[list[int], list[int]]:
    """(every seq in order, every sealed event pk) of the log."""
    with factory() as session:
        seqs = list(session.scalars(select(AuditLogEntry.seq).order_by(AuditLogEntry.seq)))
        pks = list(session.scalars(select(AuditLogEntry.event_pk)))
    return seqs, pks


def event_count(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


# ---- raw SQL, as an attacker with DDL rights ------------------------------------------------


def is_postgres_url(url: str) -> bool:
    return url.startswith("postgres")


def drop_append_only_guards(url: str) -> None:
    """Remove the triggers that refuse UPDATE/DELETE on the audit tables."""
    engine = create_engine(normalize_url(url))
    with engine.begin() as conn:
        for table in APPEND_ONLY:
            if is_postgres_url(url):
                conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}"))
                conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}"))
            else:
                conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_update"))
                conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_delete"))
    engine.dispose()


def run_sql(url: str, *statements: str, **params: Any) -> None:
    engine = create_engine(normalize_url(url))
    try:
        with engine.begin() as conn:
            if not is_postgres_url(url):
                conn.execute(text("PRAGMA foreign_keys=ON"))
            for statement in statements:
                conn.execute(text(statement), params)
    finally:
        engine.dispose()


def query(url: str, statement: str, **params: Any) -> list[Any]:
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(statement), params).all())
    finally:
        engine.dispose()


def assert_sealed_exactly_once(fresh: FreshApp) -> None:
    """Every event sealed, each once, in a gapless log that verifies."""
    seqs, pks = log_state(fresh.sessionmaker)
    with fresh.sessionmaker() as session:
        events = sorted(session.scalars(select(AuditEvent.pk)))
        result = verify_database(session, fresh.key_store, fresh.origin)
    assert seqs == list(range(1, len(events) + 1))
    assert sorted(pks) == events
    assert result.ok, result
