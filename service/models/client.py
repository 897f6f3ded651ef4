"""OAuth clients (platforms, administrators, compliance) and their rate plans."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Float, ForeignKey, Integer, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db.base import Base, UTCDateTime


class RatePlanRow(Base):
    __tablename__ = "rate_plans"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    requests_per_second: Mapped[float] = mapped_column(Float)
    burst: Mapped[int] = mapped_column(Integer)
    daily_quota: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OAuthClient(Base):
    """A registered client. The secret is kept only as a SHA-256 hash (it has 256 bits
    of entropy, so a slow hash adds nothing but latency)."""

    __tablename__ = "oauth_clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    platform_uscc: Mapped[str | None] = mapped_column(String(18))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    purposes: Mapped[list[str]] = mapped_column(JSON)
    rate_plan: Mapped[str] = mapped_column(ForeignKey("rate_plans.name"))
    status: Mapped[str] = mapped_column(String(16), default="active")
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32))
    secret_hash: Mapped[str | None] = mapped_column(String(128))
    jwks: Mapped[dict[str, object] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    secret_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """When the client was last suspended: its tokens issued until then stay refused, also
    once it is active again."""
    version: Mapped[int] = mapped_column(Integer, default=1)


class UsedAssertion(Base):
    """``jti`` values of accepted client assertions, so a replay is refused on every node."""

    __tablename__ = "used_assertions"
    __table_args__ = (PrimaryKeyConstraint("client_id", "jti"),)

    client_id: Mapped[str] = mapped_column(String(64))
    jti: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
