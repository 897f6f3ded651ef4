"""Token validation cost per request: a full ES256 verification versus the validated-token
cache, measured on one core in one process (no HTTP)."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from joserfc import jwt

from auth.directory import AuthDirectory
from auth.keys import KeyStore
from auth.tokens import TokenVerifier
from service.crypto import KeyRing
from service.db.engine import make_engine
from service.db.migrate import upgrade
from service.db.session import make_sessionmaker

ISSUER = "http://127.0.0.1:8000"


def _per_call_us(fn: object, n: int) -> float:
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()  # type: ignore[operator]
        samples.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(samples)


def run() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'tok.db'}"
        upgrade(url)
        engine = make_engine(url, pool_size=2)
        factory = make_sessionmaker(engine)
        store = KeyStore(factory, KeyRing(b"k" * 32), overlap_seconds=60)
        store.ensure()
        directory = AuthDirectory(factory)
        directory.reload()
        verifier = TokenVerifier(store, directory, issuer=ISSUER, audience=ISSUER)
        signer = store.view().token_signer
        assert signer is not None
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": ISSUER,
            "sub": "c",
            "client_id": "c",
            "iat": now,
            "exp": now + 900,
            "jti": "j",
            "scope": "credit:check",
        }
        token = jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": signer.kid}, claims, signer)
        full = _per_call_us(lambda: verifier.decode(token), 500)
        verifier.validate(token)
        cached = _per_call_us(lambda: verifier.validate(token), 20000)
        engine.dispose()
    return {"full_verification_us": round(full, 1), "cached_us": round(cached, 2)}


if __name__ == "__main__":
    print(json.dumps(run()))
