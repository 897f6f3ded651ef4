"""Client secrets: 256 random bits, shown once, kept only as a hash.

A fast hash is deliberate: the secret is a uniformly random 256-bit value, so no
dictionary or brute-force attack benefits from a slow KDF, and the token
endpoint stays cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SECRET_PREFIX = "css_"


def new_client_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return "sha256$" + hashlib.sha256(secret.encode("utf-8")).hexdigest()


def verify_secret(secret: str, stored: str | None) -> bool:
    if not stored or not secret or len(secret) > 512:
        return False
    return hmac.compare_digest(hash_secret(secret), stored)


def new_client_id() -> str:
    return "cs_" + secrets.token_hex(12)
