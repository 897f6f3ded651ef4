"""Signing keys: generated here, stored encrypted with the master key, rotated with overlap.

Two uses: ``token`` keys (ES256) sign access tokens and check receipts and are
published in the JWKS; ``audit`` keys (Ed25519) sign audit checkpoints as C2SP
signed notes. Rotation makes a new key active and moves the old one to
``retiring`` until ``retire_after``: the JWKS lists it and tokens it signed still
verify until then; after that it is gone from the JWKS and verifies nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from joserfc.jwk import ECKey, KeySet, OKPKey
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from service.crypto import KeyRing
from service.db.base import utcnow
from service.ids import new_id
from service.models import SigningKey

log = logging.getLogger("creditshare.keys")
TOKEN_USE = "token"
AUDIT_USE = "audit"
TOKEN_ALG = "ES256"
_KEY_PURPOSE = "signing-key"
REFRESH_SECONDS = 30.0
PUBLISHED_SECONDS = 1.0
"""How old the keys behind the JWKS and newly issued tokens may be: a rotation made by
``creditshare keys rotate`` (another process) is published and used within a second. The
receipts of checks keep ``REFRESH_SECONDS``: every key that signs is in the JWKS until its
overlap ends."""
UNKNOWN_KID_REFRESH_SECONDS = 1.0
"""At most one early reload a second for tokens signed by a key this process has not
loaded: a forged ``kid`` cannot make every request read the keys table."""


@dataclass(frozen=True)
class KeyView:
    """An immutable snapshot of the keys in force, swapped atomically on refresh."""

    token_signer: ECKey | None = None
    token_verifiers: KeySet = field(default_factory=lambda: KeySet([]))
    token_kids: frozenset[str] = frozenset()
    jwks: dict[str, list[dict[str, object]]] = field(default_factory=lambda: {"keys": []})
    audit_signer: tuple[str, Ed25519PrivateKey] | None = None
    audit_public: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    loaded_at: float = 0.0


class KeyStore:
    def __init__(
        self,
        session_factory: Callable[[], Session],
        keyring: KeyRing,
        *,
        overlap_seconds: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session_factory = session_factory
        self._keyring = keyring
        self._overlap = overlap_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._reloading = threading.Lock()
        self._failed_at = float("-inf")
        self._view = KeyView()
        self._forced_at = float("-inf")

    # ---- reading -------------------------------------------------------------------------
    def view(self, max_age: float = REFRESH_SECONDS) -> KeyView:
        """The keys in force, reloaded first if loaded more than ``max_age`` seconds ago
        (blocking: a database read)."""
        view = self._view
        if self._clock() - view.loaded_at > max_age:
            with self._reloading:  # one reload for the threads that found it stale at once
                now = self._clock()
                if now - self._view.loaded_at > max_age and now - self._failed_at > max_age:
                    try:
                        self.refresh()
                    except SQLAlchemyError:
                        # Asked fresher than usual (the JWKS, new tokens): a database that
                        # cannot answer just now leaves the keys of the usual reload in force
                        # (and is asked again after max_age, not by every caller meanwhile).
                        if now - self._view.loaded_at > REFRESH_SECONDS:
                            raise
                        self._failed_at = now
                        log.warning("keys not reloaded: the database did not answer")
            view = self._view
        return view

    def is_fresh(self) -> bool:
        """Whether :meth:`view` would answer without reloading from the database."""
        return self._clock() - self._view.loaded_at <= REFRESH_SECONDS

    def view_with(self, kid: str) -> KeyView | None:
        """A view that knows token key ``kid``, reloading early if this process has not
        loaded it yet (another process, or another API worker, made it moments ago: a
        rotation, or the first key of a new database); None if ``kid`` is still unknown or
        an early reload was made less than a second ago."""
        view = self.view()
        if kid in view.token_kids:
            return view
        now = self._clock()
        with self._lock:
            if now - self._forced_at < UNKNOWN_KID_REFRESH_SECONDS:
                return None
            self._forced_at = now
        self.refresh()
        view = self._view
        return view if kid in view.token_kids else None

    def refresh(self) -> None:
        """Reload keys from the database (another process may have rotated)."""
        with self._lock, self._session_factory() as session:
            rows = session.scalars(select(SigningKey).where(SigningKey.status != "retired")).all()
            audit_rows = session.scalars(
                select(SigningKey).where(SigningKey.use == AUDIT_USE)
            ).all()
            now = utcnow()
            token_signer: ECKey | None = None
            verifiers: list[ECKey] = []
            public: list[dict[str, object]] = []
            newest = None
            for row in sorted(rows, key=lambda r: r.created_at):
                if row.use != TOKEN_USE:
                    continue
                if row.status == "retiring" and row.retire_after and row.retire_after <= now:
                    continue
                public_key = ECKey.import_key(dict(row.public_jwk))  # type: ignore[arg-type]
                verifiers.append(public_key)
                public.append(dict(row.public_jwk))
                if row.status == "active":
                    newest = row
            if newest is not None:
                pem = self._keyring.decrypt(
                    newest.private_enc, purpose=_KEY_PURPOSE, context=newest.kid
                )
                token_signer = ECKey.import_key(
                    pem, parameters={"kid": newest.kid, "alg": TOKEN_ALG, "use": "sig"}
                )
            audit_signer = None
            audit_public: dict[str, Ed25519PublicKey] = {}
            for row in sorted(audit_rows, key=lambda r: r.created_at):
                okp = OKPKey.import_key(dict(row.public_jwk))  # type: ignore[arg-type]
                raw_pub = okp.get_op_key("verify")
                assert isinstance(raw_pub, Ed25519PublicKey)
                audit_public[row.kid] = raw_pub
                if row.status == "active":
                    pem = self._keyring.decrypt(
                        row.private_enc, purpose=_KEY_PURPOSE, context=row.kid
                    )
                    private = serialization.load_pem_private_key(pem.encode(), password=None)
                    assert isinstance(private, Ed25519PrivateKey)
                    audit_signer = (row.kid, private)
            self._view = KeyView(
                token_signer=token_signer,
                token_verifiers=KeySet(verifiers),  # type: ignore[arg-type]
                token_kids=frozenset(str(k.kid) for k in verifiers),
                jwks={"keys": public},
                audit_signer=audit_signer,
                audit_public=audit_public,
                loaded_at=self._clock(),
            )

    # ---- writing -------------------------------------------------------------------------
    def _new_row(self, use: str) -> SigningKey:
        kid = new_id("key")
        now = utcnow()
        if use == TOKEN_USE:
            key = ECKey.generate_key(
                "P-256", parameters={"kid": kid, "alg": TOKEN_ALG, "use": "sig"}, private=True
            )
            public_jwk: dict[str, object] = dict(key.as_dict(private=False))
            pem = key.as_pem(private=True).decode()
            alg = TOKEN_ALG
        else:
            okp = OKPKey.generate_key(
                "Ed25519", parameters={"kid": kid, "use": "sig"}, private=True
            )
            public_jwk = dict(okp.as_dict(private=False))
            pem = okp.as_pem(private=True).decode()
            alg = "EdDSA"
        return SigningKey(
            kid=kid,
            use=use,
            alg=alg,
            public_jwk=public_jwk,
            private_enc=self._keyring.encrypt(pem, purpose=_KEY_PURPOSE, context=kid),
            status="active",
            created_at=now,
        )

    def ensure(self) -> None:
        """Create the first key of each use if there is none (idempotent)."""
        with self._session_factory() as session, session.begin():
            for use in (TOKEN_USE, AUDIT_USE):
                exists = session.scalar(
                    select(SigningKey.kid).where(
                        SigningKey.use == use, SigningKey.status == "active"
                    )
                )
                if exists is None:
                    session.add(self._new_row(use))
        self.refresh()

    def rotate(self, use: str = TOKEN_USE) -> str:
        """Make a new active key; the previous one retires after the overlap. Returns its kid."""
        now = utcnow()
        with self._session_factory() as session, session.begin():
            for row in session.scalars(select(SigningKey).where(SigningKey.use == use)).all():
                if row.status == "active":
                    row.status = "retiring"
                    row.retiring_at = now
                    row.retire_after = now + timedelta(seconds=self._overlap)
                elif row.status == "retiring" and row.retire_after and row.retire_after <= now:
                    row.status = "retired"
            new = self._new_row(use)
            session.add(new)
        self.refresh()
        return new.kid

    def retire_now(self, kid: str) -> None:
        """Take a key out of service at once (compromise response)."""
        with self._session_factory() as session, session.begin():
            row = session.get(SigningKey, kid)
            if row is not None:
                row.status = "retired"
                row.retire_after = utcnow()
        self.refresh()
