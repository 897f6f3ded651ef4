"""The client registry: platform, administrator and compliance clients, and rate plans.

auth owns it so the token endpoint never reaches into a resource package; the
admin HTTP routes for clients live in ``service/clients`` and call this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy.orm import Session

from auth.secrets import hash_secret, new_client_id, new_client_secret, verify_secret
from schemas.clients import ClientCreate, ClientUpdate, RatePlanIn
from schemas.enums import AuthMethod, ClientStatus, Purpose, Scope
from schemas.uscc import USCCError, validate_uscc
from service.db.base import utcnow
from service.models import OAuthClient, RatePlanRow
from service.problems import ProblemError

ALLOWED_ASSERTION_KEYS = {("EC", "P-256"), ("RSA", None), ("OKP", "Ed25519")}


@dataclass(frozen=True, slots=True)
class RegisteredClient:
    """A snapshot of one client for authlib (implements its ClientMixin protocol)."""

    client_id: str
    name: str
    scopes: tuple[str, ...]
    purposes: tuple[str, ...]
    rate_plan: str
    status: str
    auth_method: str
    secret_hash: str | None
    jwks: dict[str, Any] | None

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return " ".join(self.scopes)
        wanted = scope.split()
        return " ".join(s for s in self.scopes if s in wanted)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return verify_secret(client_secret, self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


def snapshot(row: OAuthClient) -> RegisteredClient:
    return RegisteredClient(
        client_id=row.client_id,
        name=row.name,
        scopes=tuple(row.scopes),
        purposes=tuple(row.purposes),
        rate_plan=row.rate_plan,
        status=row.status,
        auth_method=row.token_endpoint_auth_method,
        secret_hash=row.secret_hash,
        jwks=dict(row.jwks) if row.jwks else None,
    )


def load_active(session: Session, client_id: str) -> RegisteredClient | None:
    """The client if it exists and is active (a suspended client cannot authenticate)."""
    if not client_id or len(client_id) > 64:
        return None
    row = session.get(OAuthClient, client_id)
    if row is None or row.status != ClientStatus.ACTIVE:
        return None
    return snapshot(row)


# ---- validation ----------------------------------------------------------------------------
def _validate_jwks(jwks: dict[str, Any]) -> dict[str, Any]:
    keys = jwks.get("keys", [])
    for key in keys:
        if not isinstance(key, dict):
            raise ProblemError(
                "validation-failed", errors=[("jwks.keys", "Each key must be a JSON object")]
            )
        if any(private in key for private in ("d", "p", "q", "dp", "dq", "qi", "k")):
            raise ProblemError(
                "validation-failed", errors=[("jwks.keys", "Only public keys may be registered")]
            )
        kty, crv = key.get("kty"), key.get("crv")
        if (kty, crv if kty != "RSA" else None) not in ALLOWED_ASSERTION_KEYS:
            raise ProblemError(
                "validation-failed",
                errors=[("jwks.keys", "Keys must be EC P-256, RSA (2048+) or OKP Ed25519")],
            )
        if kty == "RSA" and len(str(key.get("n", ""))) < 342:  # 2048 bits in base64url
            raise ProblemError(
                "validation-failed", errors=[("jwks.keys", "RSA keys must be 2048 bits or more")]
            )
    try:
        KeySet.import_key_set({"keys": keys})
    except (JoseError, ValueError, TypeError, KeyError):
        raise ProblemError(
            "validation-failed", errors=[("jwks", "Not a valid JSON Web Key Set")]
        ) from None
    return {"keys": keys}


def _validate_platform_uscc(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        return validate_uscc(raw)
    except USCCError as exc:
        raise ProblemError("invalid-uscc", extra={"reason": exc.reason}) from None


def _require_plan(session: Session, name: str) -> None:
    if session.get(RatePlanRow, name) is None:
        raise ProblemError("validation-failed", errors=[("rate_plan", "Unknown rate plan")])


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(str(i) for i in items))


# ---- commands ------------------------------------------------------------------------------
def _purposes_of(data: ClientCreate) -> list[str]:
    """The purposes asked for; omitted, every purpose for a client that checks merchants."""
    if data.purposes is not None:
        return [purpose.value for purpose in data.purposes]
    if Scope.CREDIT_CHECK in data.scopes:
        return [purpose.value for purpose in Purpose]
    return []


def create_client(session: Session, data: ClientCreate) -> tuple[OAuthClient, str | None]:
    _require_plan(session, data.rate_plan)
    jwks: dict[str, Any] | None = None
    secret: str | None = None
    if data.token_endpoint_auth_method == AuthMethod.PRIVATE_KEY_JWT:
        if data.jwks is None:
            raise ProblemError(
                "validation-failed", errors=[("jwks", "Required for private_key_jwt")]
            )
        jwks = _validate_jwks(data.jwks.model_dump())
    elif data.jwks is not None:
        raise ProblemError(
            "validation-failed", errors=[("jwks", "Only for private_key_jwt clients")]
        )
    else:
        secret = new_client_secret()
    now = utcnow()
    row = OAuthClient(
        client_id=new_client_id(),
        name=data.name,
        platform_uscc=_validate_platform_uscc(data.platform_uscc),
        scopes=_unique(data.scopes),
        purposes=_unique(_purposes_of(data)),
        rate_plan=data.rate_plan,
        status=ClientStatus.ACTIVE.value,
        token_endpoint_auth_method=data.token_endpoint_auth_method.value,
        secret_hash=hash_secret(secret) if secret else None,
        jwks=jwks,
        created_at=now,
        updated_at=now,
        secret_rotated_at=now if secret else None,
        version=1,
    )
    session.add(row)
    session.flush()
    return row, secret


def get_client(session: Session, client_id: str) -> OAuthClient:
    row = session.get(OAuthClient, client_id) if len(client_id) <= 64 else None
    if row is None:
        raise ProblemError("not-found")
    return row


def find_by_name(session: Session, name: str) -> OAuthClient | None:
    """The oldest client registered under ``name`` (names are not unique; the demo uses one)."""
    return session.scalars(
        select(OAuthClient)
        .where(OAuthClient.name == name)
        .order_by(OAuthClient.created_at, OAuthClient.client_id)
        .limit(1)
    ).first()


def list_clients(session: Session, *, limit: int, before: str | None) -> list[OAuthClient]:
    query = select(OAuthClient).order_by(
        OAuthClient.created_at.desc(), OAuthClient.client_id.desc()
    )
    if before is not None:
        anchor = session.get(OAuthClient, before)
        if anchor is not None:
            query = query.where(
                (OAuthClient.created_at < anchor.created_at)
                | ((OAuthClient.created_at == anchor.created_at) & (OAuthClient.client_id < before))
            )
    return list(session.scalars(query.limit(limit + 1)).all())


def describe(row: OAuthClient) -> dict[str, object]:
    """What the audit trail keeps of a client (no secret, no hash)."""
    return {
        "name": row.name,
        "scopes": list(row.scopes),
        "purposes": list(row.purposes),
        "rate_plan": row.rate_plan,
        "status": row.status,
        "token_endpoint_auth_method": row.token_endpoint_auth_method,
        "jwks_kids": [k.get("kid") for k in (row.jwks or {}).get("keys", [])],  # type: ignore[attr-defined]
    }


def update_client(
    session: Session, client_id: str, data: ClientUpdate
) -> tuple[OAuthClient, dict[str, object]]:
    """Apply a partial update; returns the row and the ``before`` description."""
    row = get_client(session, client_id)
    before = describe(row)
    changes = data.model_dump(exclude_unset=True)
    if "rate_plan" in changes and changes["rate_plan"] is not None:
        _require_plan(session, changes["rate_plan"])
        row.rate_plan = changes["rate_plan"]
    if changes.get("name") is not None:
        row.name = changes["name"]
    if changes.get("scopes") is not None:
        row.scopes = _unique([str(s) for s in changes["scopes"]])
    if changes.get("purposes") is not None:
        row.purposes = _unique([str(p) for p in changes["purposes"]])
    if "jwks" in changes and changes["jwks"] is not None:
        if row.token_endpoint_auth_method != AuthMethod.PRIVATE_KEY_JWT:
            raise ProblemError(
                "validation-failed", errors=[("jwks", "Only for private_key_jwt clients")]
            )
        row.jwks = _validate_jwks(changes["jwks"])
    now = utcnow()
    if changes.get("status") is not None:
        status = str(changes["status"])
        if status == ClientStatus.SUSPENDED and row.status != ClientStatus.SUSPENDED:
            row.suspended_at = now
        row.status = status
    row.updated_at = now
    row.version = row.version + 1
    session.flush()
    return row, before


def rotate_secret(session: Session, client_id: str) -> tuple[OAuthClient, str]:
    row = get_client(session, client_id)
    if row.token_endpoint_auth_method != AuthMethod.CLIENT_SECRET_BASIC:
        raise ProblemError(
            "conflict",
            detail_en="This client authenticates with private_key_jwt and has no secret.",
            detail_zh="该客户端使用 private_key_jwt 认证，没有客户端密钥。",
        )
    secret = new_client_secret()
    now = utcnow()
    row.secret_hash = hash_secret(secret)
    row.secret_rotated_at = now
    row.updated_at = now
    row.version = row.version + 1
    session.flush()
    return row, secret


def status_changes_since(session: Session, since: datetime) -> list[tuple[str, str, datetime]]:
    rows = session.execute(
        select(OAuthClient.client_id, OAuthClient.status, OAuthClient.updated_at).where(
            OAuthClient.updated_at > since
        )
    ).all()
    return [(r[0], r[1], r[2]) for r in rows]


# ---- rate plans ----------------------------------------------------------------------------
def list_plans(session: Session, *, limit: int, after: str | None) -> list[RatePlanRow]:
    """Up to ``limit + 1`` plans in name order, after the plan named ``after`` (the extra
    one tells the caller that there is a next page)."""
    query = select(RatePlanRow).order_by(RatePlanRow.name).limit(limit + 1)
    if after is not None:
        query = query.where(RatePlanRow.name > after)
    return list(session.scalars(query).all())


def get_plan(session: Session, name: str) -> RatePlanRow | None:
    return session.get(RatePlanRow, name)


def put_plan(session: Session, name: str, data: RatePlanIn) -> tuple[RatePlanRow, bool]:
    row = session.get(RatePlanRow, name)
    created = row is None
    if row is None:
        row = RatePlanRow(name=name)
        session.add(row)
    row.requests_per_second = data.requests_per_second
    row.burst = data.burst
    row.daily_quota = data.daily_quota
    row.updated_at = utcnow()
    session.flush()
    return row, created
