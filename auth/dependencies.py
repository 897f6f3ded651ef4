"""Resource protection: one ``Annotated`` alias per scope, deny by default.

A route that declares none of these aliases has no principal and the route-table
test fails, so no ``/v1`` route can be served without a scope.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Request, Security
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import OAuth2, SecurityScopes

from audit.context import RequestAudit
from auth.principal import Principal
from auth.tokens import TokenRejected, TokenVerifier
from schemas.enums import Scope
from service.problems import ProblemError

SCOPE_DESCRIPTIONS = {
    Scope.CREDIT_CHECK.value: "Create and read the client's own credit checks",
    Scope.CREDIT_DETAIL.value: "The records behind a verdict",
    Scope.CREDIT_PII.value: "Unmasked personal data (needs a consent reference per check)",
    Scope.ADMIN_CLIENTS.value: "Manage platform clients and rate plans",
    Scope.ADMIN_DATA.value: "Manage merchants, credit records, imports and the verdict policy",
    Scope.AUDIT_READ.value: "Read, export and verify the audit trail; usage statistics",
}

oauth2_scheme = OAuth2(
    flows=OAuthFlows(
        clientCredentials=OAuthFlowClientCredentials(
            tokenUrl="/oauth/token", scopes=SCOPE_DESCRIPTIONS
        )
    ),
    scheme_name="oauth2",
    auto_error=False,
)
REALM = 'realm="creditshare"'


# RFC 6750 section 3.1: no error code when no credentials were sent at all.
_CHALLENGE_ERRORS: dict[str, str | None] = {
    "missing_token": None,
    "not_bearer": "invalid_request",
}


def _unauthorized(error: str | None) -> ProblemError:
    challenge = f"Bearer {REALM}" + (f', error="{error}"' if error else "")
    return ProblemError("unauthorized", headers={"WWW-Authenticate": challenge})


def authenticate(request: Request, authorization: str | None) -> Principal:
    """The principal behind the bearer token in the Authorization header (never the query)."""
    ctx: RequestAudit | None = getattr(request.state, "audit", None)
    verifier: TokenVerifier = request.app.state.token_verifier
    try:
        principal = verifier.bearer_principal(authorization)
    except TokenRejected as exc:
        if ctx is not None:
            ctx.details["auth_error"] = exc.reason
        error = _CHALLENGE_ERRORS.get(exc.reason, "invalid_token")
        raise _unauthorized(error) from None
    if ctx is not None:
        ctx.set_actor(principal.client_id, principal.name, principal.kind)
    request.state.principal = principal
    return principal


async def require_scopes(
    request: Request,
    security_scopes: SecurityScopes,
    authorization: Annotated[str | None, Security(oauth2_scheme)],
) -> Principal:
    principal = authenticate(request, authorization)
    _require(request, principal, security_scopes.scopes)
    return principal


def _require(request: Request, principal: Principal, scopes: Iterable[str]) -> None:
    """``403 forbidden`` naming the scopes ``principal`` lacks (noted for the trail)."""
    missing = [scope for scope in scopes if scope not in principal.scopes]
    if missing:
        ctx: RequestAudit | None = getattr(request.state, "audit", None)
        if ctx is not None:
            ctx.details["missing_scope"] = " ".join(missing)
        raise ProblemError(
            "forbidden",
            headers={
                "WWW-Authenticate": f'Bearer {REALM}, error="insufficient_scope", scope="{" ".join(missing)}"'
            },
        )


CreditCheckAccess = Annotated[
    Principal, Security(require_scopes, scopes=[Scope.CREDIT_CHECK.value])
]
AdminClientsAccess = Annotated[
    Principal, Security(require_scopes, scopes=[Scope.ADMIN_CLIENTS.value])
]
AdminDataAccess = Annotated[Principal, Security(require_scopes, scopes=[Scope.ADMIN_DATA.value])]
AuditReadAccess = Annotated[Principal, Security(require_scopes, scopes=[Scope.AUDIT_READ.value])]


def route_scopes(dependant: Any) -> frozenset[str] | None:
    """The scopes ``require_scopes`` asks for anywhere in a route's dependencies (``dependant``:
    FastAPI's ``route.dependant``); None when the route takes no token at all."""
    found: set[str] | None = None
    for dep in getattr(dependant, "dependencies", ()):
        if dep.call is require_scopes:
            found = (found or set()) | set(dep.own_oauth_scopes or ())
        inner = route_scopes(dep)
        if inner is not None:
            found = (found or set()) | inner
    return None if found is None else frozenset(found)


def authorize_before_body(request: Request) -> None:
    """For a request whose body could not be parsed at all: FastAPI refuses that before it
    runs the route's dependencies, so a client without a valid token got a 422 (telling it
    the route exists and what it takes) and the trail did not name a client that had one.
    The route's own checks, in its order: 401 for a missing or bad token, 403 for a
    missing scope; otherwise the actor is noted and the 422 stands."""
    route = request.scope.get("route")
    scopes = route_scopes(getattr(route, "dependant", None))
    if scopes is None:
        return
    principal = authenticate(request, request.headers.get("authorization"))
    _require(request, principal, sorted(scopes))
