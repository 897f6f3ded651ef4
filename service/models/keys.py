"""Signing keys (private halves encrypted with the master key) and revoked tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.db.base import Base, UTCDateTime


class SigningKey(Base):
    """``use`` is ``token`` (access tokens and receipts, ES256) or ``audit`` (checkpoints,
    Ed25519). ``status``: ``active`` signs; ``retiring`` still verifies and is published;
    ``retired`` is gone from the JWKS and verifies nothing."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    use: Mapped[str] = mapped_column(String(16), index=True)
    alg: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, object]] = mapped_column(JSON)
    private_enc: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    retiring_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    retire_after: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RevokedToken(Base):
    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # Revocation is mirrored by polling ``revoked_at`` ranges; the index keeps that cheap.
