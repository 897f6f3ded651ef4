"""Access tokens (RFC 9068 JWTs): validation on the resource side, with a cache.

Validation is joserfc's: signature with a key from our own JWKS chosen by
``kid``, ES256 only (never ``none`` or HMAC), header ``typ: at+jwt``, and the
registered claims. A token that validated once is remembered until it expires,
so the signature is not checked again on every request; revocation and client
suspension are still consulted each time (in memory).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError

from auth.directory import AuthDirectory, ClientInfo
from auth.keys import TOKEN_ALG, KeyStore
from auth.principal import Principal

MAX_TOKEN_LENGTH = 4096
CACHE_SIZE = 50_000
ACCEPTED_TYP = {"at+jwt", "application/at+jwt"}


class TokenRejected(Exception):
    """The token is missing, malformed, forged, expired, revoked or for another audience.

    ``reason`` is for logs and the audit trail, never for the client beyond RFC 6750's
    ``invalid_token``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ValidatedToken:
    client_id: str
    jti: str
    scopes: frozenset[str]
    exp: int
    iat: int
    kid: str
    claims: dict[str, Any]


def _header_kid(token: str) -> str | None:
    """The ``kid`` of a compact JWS's protected header, unverified (None if unreadable)."""
    try:
        kid = jws.extract_compact(token.encode()).headers().get("kid")
    except (JoseError, ValueError, TypeError):
        return None
    return kid if isinstance(kid, str) and 0 < len(kid) <= 200 else None


class TokenVerifier:
    def __init__(
        self, keys: KeyStore, directory: AuthDirectory, *, issuer: str, audience: str
    ) -> None:
        self._keys = keys
        self._directory = directory
        self._issuer = issuer
        self._audience = audience
        self._cache: OrderedDict[str, ValidatedToken] = OrderedDict()
        self._lock = threading.Lock()
        self._claims = jwt.JWTClaimsRegistry(
            leeway=5,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            iat={"essential": True},
            sub={"essential": True},
            jti={"essential": True},
            client_id={"essential": True},
        )

    def decode(self, token: str) -> ValidatedToken:
        """Verify signature and claims (no revocation check): shared with introspection."""
        if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise TokenRejected("malformed")
        view = self._keys.view()
        try:
            decoded = jwt.decode(token, view.token_verifiers, algorithms=[TOKEN_ALG])
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            kid = _header_kid(token)
            fresher = None if kid is None or kid in view.token_kids else self._keys.view_with(kid)
            if fresher is None:
                raise TokenRejected("signature") from exc
            try:
                decoded = jwt.decode(token, fresher.token_verifiers, algorithms=[TOKEN_ALG])
            except (JoseError, ValueError, TypeError, KeyError) as again:
                raise TokenRejected("signature") from again
        if str(decoded.header.get("typ", "")).lower() not in ACCEPTED_TYP:
            raise TokenRejected("typ")
        claims = decoded.claims
        try:
            self._claims.validate(claims)
        except JoseError as exc:
            raise TokenRejected("expired" if "exp" in str(exc).lower() else "claims") from exc
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= time.time():
            # Strictly: the claims registry's leeway (for ``iat`` from a node whose clock is
            # a little ahead) must not keep an expired token alive (RFC 7519 4.1.4).
            raise TokenRejected("expired")
        if claims.get("sub") != claims.get("client_id") or not isinstance(
            claims.get("scope", ""), str
        ):
            raise TokenRejected("claims")
        return ValidatedToken(
            client_id=str(claims["client_id"]),
            jti=str(claims["jti"]),
            scopes=frozenset(str(claims.get("scope", "")).split()),
            exp=int(claims["exp"]),
            iat=int(claims["iat"]),
            kid=str(decoded.header.get("kid", "")),
            claims=dict(claims),
        )

    def validate(self, token: str) -> ValidatedToken:
        now = time.time()
        cached = self._cache.get(token)
        if cached is None or cached.exp <= now or cached.kid not in self._keys.view().token_kids:
            cached = self.decode(token)
            with self._lock:
                self._cache[token] = cached
                if len(self._cache) > CACHE_SIZE:
                    self._evict(now)
        if self._directory.is_revoked(cached.jti):
            raise TokenRejected("revoked")
        return cached

    def _evict(self, now: float) -> None:
        expired = [k for k, v in self._cache.items() if v.exp <= now]
        for key in expired:
            self._cache.pop(key, None)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    def bearer_principal(self, authorization: str | None) -> Principal:
        """The principal behind an ``Authorization: Bearer`` header (RFC 6750 section 2.1;
        never the query). Raises ``TokenRejected`` with reason ``missing_token`` (no header),
        ``not_bearer`` (another scheme or no token) or the token's own reason."""
        if not authorization:
            raise TokenRejected("missing_token")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise TokenRejected("not_bearer")
        return self.principal(self.validate(token))

    def _client(self, token: ValidatedToken) -> ClientInfo | None:
        return self._directory.client(token.client_id) or self._directory.load_client(
            token.client_id
        )

    @staticmethod
    def _refused_by(info: ClientInfo | None, token: ValidatedToken) -> bool:
        """The client is unknown or suspended, or was suspended after issuing the token
        (``iat`` is whole seconds, so a token of the suspension's own second is refused)."""
        return (
            info is None
            or not info.active
            or (info.suspended_at is not None and token.iat <= info.suspended_at)
        )

    def refuses(self, token: ValidatedToken) -> bool:
        """Whether the token's client no longer lets it be used (see ``_refused_by``)."""
        return self._refused_by(self._client(token), token)

    def principal(self, token: ValidatedToken) -> Principal:
        """Combine the token with the client's current registration (scopes can only shrink)."""
        info = self._client(token)
        if info is None or self._refused_by(info, token):
            raise TokenRejected("client_inactive")
        return Principal(
            client_id=info.client_id,
            name=info.name,
            kind=info.kind,
            scopes=token.scopes & info.scopes,
            purposes=info.purposes,
            rate_plan=info.rate_plan,
            token_jti=token.jti,
            token_exp=token.exp,
        )
