"""An in-memory mirror of the client registry and of revoked tokens, on every API node.

The hot path never asks the database whether a token is still good: each node
keeps the (small) client table and the unexpired revocations in memory. Changes
made on this node apply at once; changes from other nodes arrive by a Redis
pub/sub nudge (when Redis is configured) that triggers an immediate reload, and
by a short poll of the database as the backstop that needs no Redis.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from auth.principal import client_kind
from service.db.base import utcnow
from service.models import OAuthClient, RevokedToken

log = logging.getLogger("creditshare.auth")
CHANNEL = "cs:auth:changed"
POLL_SECONDS = 1.0
_OVERLAP = timedelta(seconds=5)  # re-read a margin so commits that landed late are seen


@dataclass(frozen=True, slots=True)
class ClientInfo:
    client_id: str
    name: str
    kind: str
    scopes: frozenset[str]
    purposes: frozenset[str]
    rate_plan: str
    active: bool
    suspended_at: float | None = None
    """When the client was last suspended (epoch seconds): tokens issued until then are
    refused for good."""


def _info(row: OAuthClient) -> ClientInfo:
    return ClientInfo(
        client_id=row.client_id,
        name=row.name,
        kind=client_kind(row.scopes),
        scopes=frozenset(row.scopes),
        purposes=frozenset(row.purposes),
        rate_plan=row.rate_plan,
        active=row.status == "active",
        suspended_at=None if row.suspended_at is None else row.suspended_at.timestamp(),
    )


class AuthDirectory:
    def __init__(self, session_factory: Callable[[], Session], redis: Any | None = None) -> None:
        self._session_factory = session_factory
        self._redis = redis
        self._clients: dict[str, ClientInfo] = {}
        self._revoked: dict[str, float] = {}
        self._since: datetime | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    # ---- queries (hot path, no I/O) ----------------------------------------------------------
    def client(self, client_id: str) -> ClientInfo | None:
        return self._clients.get(client_id)

    def is_revoked(self, jti: str) -> bool:
        return jti in self._revoked

    # ---- loading ----------------------------------------------------------------------------
    def load_client(self, client_id: str) -> ClientInfo | None:
        """Read one client that this node has not seen yet (created on another node)."""
        with self._session_factory() as session:
            row = session.get(OAuthClient, client_id)
            if row is None:
                return None
            info = _info(row)
        self._clients[client_id] = info
        return info

    def reload(self) -> None:
        """Pull changes since the last reload (everything, the first time)."""
        started = utcnow()
        with self._lock, self._session_factory() as session:
            client_query = select(OAuthClient)
            revoked_query = select(RevokedToken.jti, RevokedToken.expires_at).where(
                RevokedToken.expires_at > started
            )
            if self._since is not None:
                client_query = client_query.where(OAuthClient.updated_at > self._since - _OVERLAP)
                revoked_query = revoked_query.where(
                    RevokedToken.revoked_at > self._since - _OVERLAP
                )
            for row in session.scalars(client_query):
                self._clients[row.client_id] = _info(row)
            now = time.time()
            for jti, expires_at in session.execute(revoked_query):
                self._revoked[jti] = expires_at.timestamp()
            self._revoked = {j: e for j, e in self._revoked.items() if e > now}
            self._since = started

    # ---- local changes ------------------------------------------------------------------------
    def client_changed(self, row: OAuthClient) -> None:
        """Apply a committed change to a client here and tell the other nodes."""
        self._clients[row.client_id] = _info(row)
        self._publish()

    def token_revoked(self, jti: str, expires_at: float) -> None:
        self._revoked[jti] = expires_at
        self._publish()

    def _publish(self) -> None:
        if self._redis is None:
            return
        try:
            self._redis.publish(CHANNEL, b"1")
        except Exception:  # the poll still carries the change within a second
            log.warning("could not publish an auth change to Redis")

    # ---- background -------------------------------------------------------------------------
    def start(self) -> None:
        self.reload()
        poller = threading.Thread(target=self._poll_loop, name="auth-directory-poll", daemon=True)
        poller.start()
        self._threads.append(poller)
        if self._redis is not None:
            listener = threading.Thread(
                target=self._listen_loop, name="auth-directory-sub", daemon=True
            )
            listener.start()
            self._threads.append(listener)

    def stop(self) -> None:
        """Stop the background threads and wait for them, so no reload is still holding a
        pooled connection when the engine is disposed."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.reload()
            except Exception:
                log.warning("auth directory reload failed; keeping the last known state")

    def _listen_loop(self) -> None:
        while not self._stop.is_set():
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[union-attr]
                pubsub.subscribe(CHANNEL)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._wake.set()
                pubsub.close()
            except Exception:
                self._stop.wait(1.0)


def record_revocation(session: Session, *, jti: str, client_id: str, expires_at: float) -> None:
    """Store a revocation (flush only; the caller's transaction commits)."""
    if session.get(RevokedToken, jti) is not None:
        return
    session.add(
        RevokedToken(
            jti=jti,
            client_id=client_id,
            expires_at=datetime.fromtimestamp(expires_at, tz=utcnow().tzinfo),
            revoked_at=utcnow(),
        )
    )
    session.flush()
