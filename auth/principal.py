"""Who is calling: the client behind a validated access token."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.enums import Scope

ADMIN_SCOPES = frozenset({Scope.ADMIN_CLIENTS.value, Scope.ADMIN_DATA.value})


def client_kind(scopes: frozenset[str] | set[str] | list[str]) -> str:
    """``admin``, ``compliance`` or ``platform``: how the audit trail names an actor."""
    granted = set(scopes)
    if granted & ADMIN_SCOPES:
        return "admin"
    if Scope.AUDIT_READ.value in granted:
        return "compliance"
    return "platform"


@dataclass(frozen=True, slots=True)
class Principal:
    client_id: str
    name: str
    kind: str
    scopes: frozenset[str]
    purposes: frozenset[str]
    rate_plan: str
    token_jti: str
    token_exp: int

    def has(self, scope: str) -> bool:
        return scope in self.scopes
