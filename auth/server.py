"""The OAuth 2.0 authorization server: authlib does the protocol, this module adapts it.

authlib has no FastAPI integration, so :class:`FormRequest` carries an already
parsed form into authlib's request type, and :meth:`handle_response` hands
authlib's ``(status, body, headers)`` back to the router. Everything RFC 6749,
7523, 7662, 7009 and 9068 say is authlib's code; ours only answers its questions
(which client, which keys, was this ``jti`` seen, is this token ours).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from authlib.oauth2.rfc6749 import AuthorizationServer, ClientCredentialsGrant
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload, OAuth2Request
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from auth.directory import AuthDirectory, record_revocation
from auth.keys import PUBLISHED_SECONDS, TOKEN_ALG, KeyStore
from auth.registry import RegisteredClient, load_active
from auth.tokens import TokenRejected, TokenVerifier, ValidatedToken
from schemas.enums import Scope
from service.models import UsedAssertion

ASSERTION_ALGORITHMS = ["ES256", "PS256", "EdDSA"]
AUTH_METHODS = ["client_secret_basic", "private_key_jwt"]
MAX_ASSERTION_LIFETIME = 3600
"""Seconds a client assertion may still live when it arrives. Its ``jti`` is kept that
long (plus the leeway) to refuse a replay, so the bound keeps that table small; an hour
admits off-the-shelf clients, authlib's ``PrivateKeyJWT`` among them, which sign their
assertions for an hour by default."""
ASSERTION_LEEWAY = 30
"""Seconds of clock skew allowed on an assertion's ``exp``, ``nbf`` and ``iat``."""
ASSERTION_ENDPOINTS = ("token", "introspect", "revoke")
"""The endpoints (under ``/oauth/``) that authenticate clients, and so take assertions."""
INVALID_CLIENT = "Client authentication failed."
"""The one description of a failed client authentication, whatever failed (an unknown
client, a wrong secret, a bad assertion): a different text for each would tell anyone
which client ids exist."""
_DEFAULT_DESCRIPTIONS = {
    "invalid_request": "The request is missing a parameter or is malformed.",
    "invalid_grant": "The token was not issued to this client.",
    "invalid_scope": "The requested scope is invalid or not registered for this client.",
    "unauthorized_client": "This client may not use this grant type.",
    "unsupported_grant_type": "Only the client_credentials grant is supported.",
}


class FormRequest(OAuth2Request):
    """authlib's request, built from a form the router has already read.

    authlib checks that the request URI is https. TLS ends at the proxy in front
    of the API, and the settings already refuse a non-https issuer in ``prod``,
    so the URI handed over is the endpoint path under an https origin.
    """

    def __init__(self, path: str, headers: Mapping[str, str], form: dict[str, str]) -> None:
        super().__init__("POST", "https://creditshare.internal" + path, headers=headers)
        self._form = form
        self.payload = BasicOAuth2Payload(form)

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}


class TokenRecord:
    """A validated access token, as authlib's introspection and revocation see it."""

    def __init__(
        self, token: ValidatedToken, directory: AuthDirectory, verifier: TokenVerifier
    ) -> None:
        self.token = token
        self._directory = directory
        self._verifier = verifier

    def check_client(self, client: RegisteredClient) -> bool:
        return client.client_id == self.token.client_id

    def get_scope(self) -> str:
        return " ".join(sorted(self.token.scopes))

    def get_expires_in(self) -> int:
        return max(0, self.token.exp - int(time.time()))

    def is_expired(self) -> bool:
        return self.token.exp <= time.time()

    def is_revoked(self) -> bool:
        """Revoked, or its client is unknown, suspended, or was suspended after the token
        was issued (``TokenVerifier.refuses``: the same rule as on the resource side)."""
        return self._directory.is_revoked(self.token.jti) or self._verifier.refuses(self.token)


def _assertion_keys(assertion: str, keys: Any) -> list[Any]:
    """What to verify a client assertion with: the registered key set, which picks the key
    the header's ``kid`` names; without a ``kid`` (authlib's ``PrivateKeyJWT`` sends none),
    each registered key in turn (at most ten, ``schemas.clients``: a client rotating its key
    registers the old and the new one)."""
    if not isinstance(keys, KeySet) or len(keys.keys) < 2:
        return [keys]
    try:
        kid = jws.extract_compact(assertion.encode()).headers().get("kid")
    except (JoseError, ValueError, TypeError):
        return [keys]
    if kid is not None:
        return [keys]
    return list(keys.keys)


class PrivateKeyJWT(JWTBearerClientAssertion):
    """RFC 7523 client authentication with a key the client registered."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, issuer: str, session_factory: Callable[[], Session]) -> None:
        super().__init__(validate_jti=True, leeway=ASSERTION_LEEWAY)
        self._issuer = issuer
        self._session_factory = session_factory

    def get_audiences(self) -> list[str]:
        """The issuer (what the contract names), or the URL of one of this server's
        endpoints that take client authentication: RFC 7523 section 3 allows the token
        endpoint's URL, and clients such as authlib's ``PrivateKeyJWT`` send the URL they
        post to. Each names this authorization server; a used ``jti`` is refused anyway."""
        return [self._issuer, *(f"{self._issuer}/oauth/{path}" for path in ASSERTION_ENDPOINTS)]

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        token = None
        for key in _assertion_keys(assertion, resolve_key):
            try:
                token = jwt.decode(assertion, key, algorithms=ASSERTION_ALGORITHMS)
                break
            except (JoseError, ValueError, TypeError, KeyError):
                continue
        if token is None:
            raise InvalidClientError(status_code=401, description="Invalid client assertion.")
        claims = token.claims
        exp = claims.get("exp")
        if (
            isinstance(exp, int | float)
            and exp - time.time() > MAX_ASSERTION_LIFETIME + self.leeway
        ):
            raise InvalidClientError(
                status_code=401, description="Client assertion lives too long."
            )
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) != 1:
            raise InvalidClientError(
                status_code=401, description="Client assertion audience is not this server."
            )
        self.verify_claims(token.claims)
        return token.claims

    def resolve_client_public_key(self, client: RegisteredClient) -> KeySet:
        if not client.jwks:
            raise InvalidClientError(
                status_code=401, description="The client has no registered keys."
            )
        return KeySet.import_key_set(client.jwks)  # type: ignore[arg-type]

    def validate_jti(self, claims: Any, jti: Any) -> bool:
        """Record ``jti`` as used (False: already used, or not a usable id). It is kept
        until the assertion can no longer be accepted at all, its ``exp`` plus the leeway:
        forgetting it at ``exp`` would let a captured assertion be replayed within the
        leeway."""
        if not isinstance(jti, str) or not 8 <= len(jti) <= 200:
            return False
        exp = float(claims.get("exp", time.time() + MAX_ASSERTION_LIFETIME))
        keep_until = datetime.fromtimestamp(exp + self.leeway + 1, UTC)
        try:
            with self._session_factory() as session, session.begin():
                session.execute(
                    delete(UsedAssertion).where(UsedAssertion.expires_at < datetime.now(UTC))
                )
                session.add(
                    UsedAssertion(client_id=str(claims["sub"]), jti=jti, expires_at=keep_until)
                )
        except IntegrityError:
            return False
        return True


class ScopedClientCredentialsGrant(ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def validate_requested_scope(self) -> None:
        super().validate_requested_scope()
        requested = (self.request.payload.scope or "").split()
        client: RegisteredClient = self.request.client
        if requested and not set(requested) <= set(client.scopes):
            raise InvalidScopeError(
                description="A requested scope is not registered for this client."
            )


class AccessTokenGenerator(JWTBearerTokenGenerator):
    def __init__(self, issuer: str, audience: str, keys: KeyStore, ttl: int) -> None:
        super().__init__(issuer=issuer, alg=TOKEN_ALG, expires_generator=lambda _c, _g: ttl)
        self._audience = audience
        self._keys = keys

    def get_jwks(self) -> KeySet:
        # Tokens are issued on a worker thread; a key rotated moments ago signs at once.
        signer = self._keys.view(max_age=PUBLISHED_SECONDS).token_signer
        if signer is None:
            raise RuntimeError("no active token signing key")
        return KeySet([signer])

    def get_audiences(self, client: Any, user: Any, scope: Any) -> str:
        return self._audience

    def get_jti(self, client: Any, grant_type: Any, user: Any, scope: Any) -> str:
        return secrets.token_urlsafe(18)


class _TokenLookup:
    def __init__(self, verifier: TokenVerifier, directory: AuthDirectory) -> None:
        self._verifier = verifier
        self._directory = directory

    def query(self, token_string: str) -> TokenRecord | None:
        try:
            return TokenRecord(self._verifier.decode(token_string), self._directory, self._verifier)
        except TokenRejected:
            return None


def _require_token(request: Any) -> None:
    """The parameters of introspection and revocation: a ``token``. A ``token_type_hint``
    is only a hint, and one the server does not know is ignored (RFC 7009 section 2.1;
    RFC 7662 section 2.1: the server searches all its token types), not an error."""
    if not request.form.get("token"):
        raise InvalidRequestError(description="The token parameter is required.")


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = AUTH_METHODS

    def check_params(self, request: Any, client: Any) -> None:
        _require_token(request)

    def __init__(self, lookup: _TokenLookup, issuer: str, audience: str) -> None:
        super().__init__()
        self._lookup = lookup
        self._issuer = issuer
        self._audience = audience

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRecord | None:
        return self._lookup.query(token_string)

    def check_permission(self, token: TokenRecord, client: RegisteredClient, request: Any) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: TokenRecord) -> dict[str, Any]:
        t = token.token
        return {
            "active": True,
            "client_id": t.client_id,
            "sub": t.client_id,
            "scope": token.get_scope(),
            "token_type": "Bearer",
            "iss": self._issuer,
            "aud": self._audience,
            "exp": t.exp,
            "iat": t.iat,
            "jti": t.jti,
        }


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = AUTH_METHODS

    def check_params(self, request: Any, client: Any) -> None:
        _require_token(request)

    def __init__(
        self, lookup: _TokenLookup, session_factory: Callable[[], Session], directory: AuthDirectory
    ) -> None:
        super().__init__()
        self._lookup = lookup
        self._session_factory = session_factory
        self._directory = directory

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRecord | None:
        return self._lookup.query(token_string)

    def revoke_token(self, token: TokenRecord, request: Any) -> None:
        t = token.token
        with self._session_factory() as session, session.begin():
            record_revocation(session, jti=t.jti, client_id=t.client_id, expires_at=float(t.exp))
        self._directory.token_revoked(t.jti, float(t.exp))


class CreditShareAuthorizationServer(AuthorizationServer):
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        session_factory: Callable[[], Session],
        keys: KeyStore,
        verifier: TokenVerifier,
        directory: AuthDirectory,
        token_ttl: int,
    ) -> None:
        super().__init__(scopes_supported=[s.value for s in Scope])
        self.issuer = issuer
        self._session_factory = session_factory
        self.register_client_auth_method("private_key_jwt", PrivateKeyJWT(issuer, session_factory))
        self.register_grant(ScopedClientCredentialsGrant)
        self.register_token_generator(
            "default", AccessTokenGenerator(issuer, audience, keys, token_ttl)
        )
        lookup = _TokenLookup(verifier, directory)
        self.register_endpoint(Introspection(lookup, issuer, audience))
        self.register_endpoint(Revocation(lookup, session_factory, directory))

    def query_client(self, client_id: str) -> RegisteredClient | None:
        with self._session_factory() as session:
            return load_active(session, client_id)

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        """JWT access tokens are self-contained: nothing to store."""

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        assert isinstance(request, FormRequest)
        return request

    def handle_response(
        self, status: int, body: Any, headers: Any
    ) -> tuple[int, Any, list[tuple[str, str]]]:
        """authlib's answer, made uniform: every error has an ``error_description``; a failed
        client authentication is 401 with one description and a ``Basic`` challenge that
        names its realm (RFC 7617 section 2), whichever authentication method failed."""
        header_list = [(str(k), str(v)) for k, v in (headers or [])]
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            error = body["error"]
            if error == "invalid_client":
                status = 401
                body = {"error": error, "error_description": INVALID_CLIENT}
                header_list = [(k, v) for k, v in header_list if k.lower() != "www-authenticate"]
                header_list.append(
                    ("WWW-Authenticate", 'Basic realm="creditshare", error="invalid_client"')
                )
            elif not body.get("error_description"):
                description = _DEFAULT_DESCRIPTIONS.get(error, "The request was refused.")
                body = {**body, "error_description": description}
        return status, body, header_list
