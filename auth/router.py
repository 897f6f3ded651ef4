"""HTTP surface of the authorization server: token, introspection, revocation,
metadata (RFC 8414) and the JWKS."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from joserfc import jws
from joserfc.errors import JoseError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers

from audit.context import RequestAudit
from auth.dependencies import SCOPE_DESCRIPTIONS
from auth.keys import PUBLISHED_SECONDS, TOKEN_ALG
from auth.server import (
    ASSERTION_ALGORITHMS,
    INVALID_CLIENT,
    CreditShareAuthorizationServer,
    FormRequest,
)
from auth.throttle import TokenEndpointThrottle, Verdict

router = APIRouter(tags=["oauth"])
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 16_384
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

_FORM_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            FORM_TYPE: {
                "schema": {
                    "type": "object",
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials"]},
                        "scope": {"type": "string", "maxLength": 500},
                        "client_assertion_type": {"type": "string", "maxLength": 200},
                        "client_assertion": {"type": "string", "maxLength": 8000},
                        "token": {"type": "string", "maxLength": 4096},
                        "token_type_hint": {"type": "string", "maxLength": 50},
                    },
                }
            }
        },
    }
}
_OAUTH_ERROR = {
    "description": "RFC 6749 §5.2 error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {"type": "string"},
                    "error_description": {"type": "string"},
                },
            }
        }
    },
}
_OAUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _OAUTH_ERROR,
    401: _OAUTH_ERROR,
    413: {"description": "Body too large"},
    429: _OAUTH_ERROR,
}


def _error(
    status: int, error: str, description: str, headers: dict[str, str] | None = None
) -> Response:
    body = orjson.dumps({"error": error, "error_description": description})
    return Response(
        body,
        status_code=status,
        media_type="application/json",
        headers={**NO_STORE, **(headers or {})},
    )


OAUTH_PARAMETERS = frozenset(
    {
        "grant_type",
        "scope",
        "client_id",
        "client_secret",
        "client_assertion",
        "client_assertion_type",
        "token",
        "token_type_hint",
    }
)
"""The parameters these endpoints define, which "MUST NOT be included more than once"
(RFC 6749 section 3.2; RFC 7009, 7521, 7662). Others are ignored, repeated or not."""


async def _read_form(request: Request) -> dict[str, str] | Response:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM_TYPE:
        return _error(400, "invalid_request", "The body must be application/x-www-form-urlencoded.")
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        return _error(400, "invalid_request", "The request body is too large.")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return _error(400, "invalid_request", "The body is not valid form data.")
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            if key in OAUTH_PARAMETERS:
                return _error(400, "invalid_request", "A parameter was sent more than once.")
            continue  # an unrecognised parameter is ignored (RFC 6749 section 3.2)
        form[key] = value
    return form


def _authentication_conflict(request: Request, form: dict[str, str]) -> Response | None:
    """A request that authenticates its client more than one way (RFC 6749 section 2.3: it
    "MUST NOT use more than one authentication method") is ``invalid_request``; one whose
    ``client_id`` parameter names another client than its credentials is
    ``invalid_client`` (RFC 7521 section 4.2)."""
    basic = request.headers.get("authorization", "")[:6].lower() == "basic "
    assertion = "client_assertion" in form or "client_assertion_type" in form
    posted_secret = "client_secret" in form
    if basic + assertion + posted_secret > 1:
        return _error(400, "invalid_request", "Use exactly one method of client authentication.")
    named = form.get("client_id")
    if named and (basic or assertion):
        authenticated = _claimed_client_id(
            request, {k: v for k, v in form.items() if k != "client_id"}
        )
        if authenticated is not None and authenticated != named[:64]:
            return _invalid_client()
    return None


def _invalid_client() -> Response:
    """The one answer to a failed client authentication (``auth.server.INVALID_CLIENT``)."""
    return _error(
        401,
        "invalid_client",
        INVALID_CLIENT,
        {"WWW-Authenticate": 'Basic realm="creditshare", error="invalid_client"'},
    )


def _headers_for_authlib(request: Request) -> Headers:
    """The request's headers, less an ``Authorization: Basic`` followed by nothing but spaces:
    authlib cannot split such a header (it failed with a 500), and without it the request is
    one that did not authenticate, which authlib refuses as ``invalid_client``."""
    auth = request.headers.get("authorization", "")
    if auth[:6].lower() != "basic " or auth[6:].strip():
        return request.headers
    return Headers(raw=[(k, v) for k, v in request.headers.raw if k != b"authorization"])


def _claimed_client_id(request: Request, form: dict[str, str]) -> str | None:
    """The client id a request claims to be (for throttling and the trail; not trusted)."""
    auth = request.headers.get("authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
            return unquote(decoded.partition(":")[0])[:64] or None
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
    assertion = form.get("client_assertion")
    if assertion:
        try:
            payload = orjson.loads(jws.extract_compact(assertion.encode()).payload)
            sub = payload.get("sub") if isinstance(payload, dict) else None
            return str(sub)[:64] if isinstance(sub, str) else None
        except (JoseError, ValueError, TypeError):
            return None
    return form.get("client_id", "")[:64] or None


async def _run(request: Request, endpoint: str) -> Response:
    ctx: RequestAudit = request.state.audit
    ctx.action = f"oauth.{endpoint}"
    form = await _read_form(request)
    if isinstance(form, Response):
        ctx.details["error"] = "invalid_request"
        return form
    if endpoint == "token" and not form.get("grant_type"):
        ctx.details["error"] = "invalid_request"
        return _error(400, "invalid_request", "The grant_type parameter is required.")
    claimed = _claimed_client_id(request, form)
    conflict = _authentication_conflict(request, form)
    if conflict is not None:
        ctx.details["error"] = "conflicting_client_authentication"
        if claimed:
            ctx.details["claimed_client_id"] = claimed
        return conflict
    throttle: TokenEndpointThrottle = request.app.state.token_throttle
    verdict = await run_in_threadpool(throttle.admit, ctx.ip, claimed)
    if not verdict.allowed:
        return _throttled(ctx, verdict)
    server: CreditShareAuthorizationServer = request.app.state.oauth_server
    oauth_request = FormRequest(f"/oauth/{endpoint}", _headers_for_authlib(request), form)
    if endpoint == "token":
        status, body, headers = await run_in_threadpool(server.create_token_response, oauth_request)
    else:
        name = "introspection" if endpoint == "introspect" else "revocation"
        status, body, headers = await run_in_threadpool(
            server.create_endpoint_response, name, oauth_request
        )
    client = oauth_request.client
    if client is not None:
        ctx.set_actor(client.client_id, client.name, "client")
        from auth.principal import client_kind  # local: keeps the import graph flat

        ctx.actor_kind = client_kind(list(client.scopes))
    elif claimed:
        ctx.details["claimed_client_id"] = claimed
    if isinstance(body, dict) and "error" in body:
        ctx.details["error"] = body["error"]
        if body["error"] == "invalid_client":
            await run_in_threadpool(throttle.failed, ctx.ip, claimed)
            if verdict.failures_braked is not None:  # the address has failed too often
                return _throttled(ctx, verdict.failures_braked, failed=True)
    elif endpoint == "token" and isinstance(body, dict):
        ctx.details["scope"] = body.get("scope")
    response_headers = dict(headers)
    response_headers.update(verdict.headers)
    response_headers.update(NO_STORE)
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers=response_headers,
    )


def _throttled(ctx: RequestAudit, verdict: Verdict, *, failed: bool = False) -> Response:
    """429 for a brake; ``failed``: the credentials were checked and wrong (the trail keeps
    ``invalid_client``, what compliance looks for in brute force)."""
    if failed:
        ctx.details["throttled"] = True
    else:
        ctx.details["error"] = "throttled"
    return _error(
        429,
        "invalid_request",
        "Too many requests or failed attempts; retry later.",
        {**verdict.headers, "Retry-After": str(verdict.retry_after)},
    )


@router.post(
    "/oauth/token", name="oauth_token", openapi_extra=_FORM_DOC, responses=_OAUTH_RESPONSES
)
async def token(request: Request) -> Response:
    """Client credentials grant (RFC 6749 §4.4) with client_secret_basic or private_key_jwt."""
    return await _run(request, "token")


@router.post(
    "/oauth/introspect",
    name="oauth_introspect",
    openapi_extra=_FORM_DOC,
    responses=_OAUTH_RESPONSES,
)
async def introspect(request: Request) -> Response:
    """RFC 7662: a client may introspect only its own tokens."""
    return await _run(request, "introspect")


@router.post(
    "/oauth/revoke", name="oauth_revoke", openapi_extra=_FORM_DOC, responses=_OAUTH_RESPONSES
)
async def revoke(request: Request) -> Response:
    """RFC 7009: a client may revoke only its own tokens; every node refuses it at once."""
    return await _run(request, "revoke")


@router.get("/oauth/jwks", name="oauth_jwks")
def jwks(request: Request) -> JSONResponse:
    """Public signing keys; during a rotation both the old and the new key are listed. A new
    key is listed within a second of its rotation (read on a worker thread)."""
    view = request.app.state.key_store.view(max_age=PUBLISHED_SECONDS)
    return JSONResponse(view.jwks, headers={"Cache-Control": "public, max-age=60"})


@router.get("/.well-known/oauth-authorization-server", name="oauth_metadata")
async def metadata(request: Request) -> JSONResponse:
    """RFC 8414 authorization server metadata."""
    issuer: str = request.app.state.settings.issuer
    return JSONResponse(
        {
            "issuer": issuer,
            "token_endpoint": f"{issuer}/oauth/token",
            "jwks_uri": f"{issuer}/oauth/jwks",
            "introspection_endpoint": f"{issuer}/oauth/introspect",
            "revocation_endpoint": f"{issuer}/oauth/revoke",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
            "introspection_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "private_key_jwt",
            ],
            "introspection_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
            "revocation_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "private_key_jwt",
            ],
            "revocation_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
            "scopes_supported": list(SCOPE_DESCRIPTIONS),
            # REQUIRED by RFC 8414, and validators (authlib's) refuse an empty list. This
            # server has no authorization endpoint, so it issues nothing there: "none",
            # the registered response type that returns no code and no token.
            "response_types_supported": ["none"],
            "service_documentation": f"{issuer}/docs",
            "access_token_signing_alg_values_supported": [TOKEN_ALG],
        },
        headers={"Cache-Control": "public, max-age=300"},
    )
