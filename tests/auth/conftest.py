"""Helpers for the OAuth tests: client key pairs and hand-made assertions and tokens."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey


class KeyPair:
    def __init__(self, kid: str | None = None) -> None:
        self.kid = kid or uuid.uuid4().hex[:12]
        self.private = ECKey.generate_key(
            "P-256", parameters={"kid": self.kid, "alg": "ES256"}, private=True
        )

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.private.as_dict(private=False)]}

    def assertion(self, client_id: str, audience: str, **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "iat": now,
            "exp": now + 120,
            "jti": uuid.uuid4().hex,
        }
        header = {"alg": "ES256", "kid": self.kid}
        header.update(overrides.pop("header", {}))
        header = {k: v for k, v in header.items() if v is not None}  # {"kid": None}: none
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(header, claims, self.private)


@pytest.fixture
def keypair() -> KeyPair:
    return KeyPair()


def assertion_form(assertion: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
        **extra,
    }
