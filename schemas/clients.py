"""Platform clients and rate plans (administration)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints, model_validator

from schemas.common import ShortText, StrictModel
from schemas.enums import AuthMethod, ClientStatus, Purpose, Scope

PlanName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class JWKSet(StrictModel):
    keys: list[dict[str, Any]] = Field(min_length=1, max_length=10)


class ClientCreate(StrictModel):
    name: ShortText
    platform_uscc: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    scopes: list[Scope] = Field(min_length=1, max_length=6)
    purposes: list[Purpose] | None = Field(
        default=None,
        max_length=5,
        description="The purposes its checks may state. Omitted: every purpose for a client "
        "with credit:check (as an omitted scope means every registered scope), none for "
        "others; [] none.",
    )
    rate_plan: PlanName = "standard"
    token_endpoint_auth_method: AuthMethod = AuthMethod.CLIENT_SECRET_BASIC
    jwks: JWKSet | None = None


class ClientUpdate(StrictModel):
    """Only what an administrator may change; anything else is refused (422)."""

    name: ShortText | None = None
    scopes: list[Scope] | None = Field(default=None, min_length=1, max_length=6)
    purposes: list[Purpose] | None = Field(default=None, max_length=5)
    rate_plan: PlanName | None = None
    jwks: JWKSet | None = None
    status: ClientStatus | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> ClientUpdate:
        """A member left out is left unchanged; ``null`` sets nothing either, so it is
        refused rather than silently ignored (none of these can be cleared)."""
        nulls = sorted(name for name in self.model_fields_set if getattr(self, name) is None)
        if nulls:
            raise ValueError(f"may not be null: {', '.join(nulls)}")
        return self


class ClientOut(BaseModel):
    client_id: str
    name: str
    platform_uscc: str | None
    scopes: list[str]
    purposes: list[str]
    rate_plan: str
    status: ClientStatus
    token_endpoint_auth_method: AuthMethod
    jwks: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime
    secret_rotated_at: datetime | None = None


class ClientCreated(ClientOut):
    client_secret: str | None = Field(
        default=None, description="Shown once, only for client_secret_basic clients"
    )


class SecretRotate(StrictModel):
    """The body of a secret rotation: nothing, or ``{}`` (the server chooses the secret)."""


class SecretRotated(BaseModel):
    client_id: str
    client_secret: str
    secret_rotated_at: datetime


MAX_REFILL_SECONDS = 30 * 24 * 3600


class RatePlanIn(StrictModel):
    requests_per_second: float = Field(ge=0.001, le=100_000, strict=True)
    burst: int = Field(ge=1, le=1_000_000, strict=True)
    daily_quota: int = Field(ge=1, le=100_000_000, strict=True)

    @model_validator(mode="after")
    def _refill_period_is_bounded(self) -> RatePlanIn:
        # A product limit: a full burst refills within 30 days (MAX_REFILL_SECONDS). A plan
        # that takes longer is a quota in disguise, which daily_quota says more plainly.
        if self.burst / self.requests_per_second > MAX_REFILL_SECONDS:
            raise ValueError("burst / requests_per_second must not exceed 30 days")
        return self


class RatePlanOut(BaseModel):
    name: str
    requests_per_second: float
    burst: int
    daily_quota: int
    updated_at: datetime
