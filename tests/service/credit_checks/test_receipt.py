"""Receipts verified as a platform would: another JOSE library (PyJWT) and the JWKS only."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from joserfc import jws
from joserfc.jwk import ECKey

from service.credit_checks.receipt import ReceiptSigner, sign_receipt
from tests.fixtures.factories import Factory
from tests.service.credit_checks.support import check, platform


def _verify(client: TestClient, receipt: str) -> dict[str, Any]:
    jwks = client.get("/oauth/jwks").json()
    header = jwt.get_unverified_header(receipt)
    assert header["typ"] == "credit-check+jwt"
    assert header["alg"] == "ES256"
    (jwk,) = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    key = jwt.PyJWK.from_dict(jwk)
    claims: dict[str, Any] = jwt.decode(
        receipt,
        key=key,
        algorithms=["ES256"],
        issuer="http://testserver",
        options={"require": ["iss", "sub", "iat"]},
    )
    return claims


def _digest(records: list[dict[str, Any]]) -> str:
    canonical = json.dumps(
        sorted(records, key=lambda r: r["id"]),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def test_receipt_verifies_offline_and_binds_the_evidence(
    client: TestClient, factory: Factory
) -> None:
    creds = factory.client("credit:check credit:detail")
    headers = {"Authorization": f"Bearer {factory.token(creds)}"}
    uscc = factory.merchant()
    factory.record(uscc, category="ADMINISTRATIVE_PENALTY", severity="GENERAL")
    factory.record(uscc, category="HONOR", severity="GENERAL")
    factory.record(uscc, category="COURT_CASE", severity="SERIOUS", status="REPAIRED")
    body = check(client, headers, uscc, purpose="TRANSACTION_RISK").json()
    claims = _verify(client, body["receipt"])
    assert claims == {
        "iss": "http://testserver",
        "sub": creds.client_id,
        "iat": claims["iat"],
        "check_id": body["id"],
        "uscc": uscc,
        "purpose": "TRANSACTION_RISK",
        "verdict": "CAUTION",
        "policy_version": body["policy_version"],
        "records_digest": _digest(body["records"]),
    }
    assert len(body["records"]) == 2
    assert isinstance(claims["iat"], int)


def test_digest_is_of_the_deciding_records_even_without_detail(
    client: TestClient, factory: Factory
) -> None:
    uscc = factory.merchant()
    factory.record(uscc, category="JUDGMENT_DEBTOR", severity="MINOR")
    detailed = check(client, platform(factory, "credit:check credit:detail"), uscc).json()
    plain = check(client, platform(factory), uscc).json()
    assert "records" not in plain
    digest = _verify(client, plain["receipt"])["records_digest"]
    assert digest == _digest(detailed["records"])
    clean = check(client, platform(factory), factory.merchant()).json()
    assert _verify(client, clean["receipt"])["records_digest"] == hashlib.sha256(b"[]").hexdigest()


def test_a_tampered_receipt_fails(client: TestClient, factory: Factory) -> None:
    body = check(client, platform(factory), factory.merchant()).json()
    head, payload, signature = body["receipt"].split(".")
    forged_claims = jwt.utils.base64url_decode(payload).replace(b'"CLEAR"', b'"RESTRICTED"')
    forged = ".".join([head, jwt.utils.base64url_encode(forged_claims).decode(), signature])
    assert forged != body["receipt"]
    with pytest.raises(jwt.InvalidSignatureError):
        _verify(client, forged)


@pytest.mark.parametrize("curve", ["P-384", "P-521"])
def test_receipts_are_signed_with_p256_only(curve: str) -> None:
    """ES256 is P-256: a key on another curve is refused, not turned into a broken JWS."""
    key = ECKey.generate_key(curve, parameters={"kid": "k"}, private=True)
    with pytest.raises(ValueError, match="P-256"):
        sign_receipt(key, {"check_id": "chk_x"})


def test_a_receipt_is_a_compact_jws_any_es256_library_reads() -> None:
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"}, private=True)
    token = sign_receipt(key, {"check_id": "chk_x", "uscc": "91350100M000100Y43", "n": "中文"})
    signature = token.split(".")[2]
    assert "=" not in token
    assert len(base64.urlsafe_b64decode(signature + "==")) == 64  # R || S, 32 bytes each
    decoded = jws.deserialize_compact(token, key, algorithms=["ES256"])
    assert decoded.headers() == {"alg": "ES256", "kid": "k1", "typ": "credit-check+jwt"}
    assert json.loads(decoded.payload)["n"] == "中文"


def test_each_key_signs_under_its_own_kid() -> None:
    """A signer made ready for one key (once per request or group) never signs under
    another key's kid, nor verifies with another key."""
    keys = [
        ECKey.generate_key("P-256", parameters={"kid": f"k{i}"}, private=True) for i in range(3)
    ]
    signers = [ReceiptSigner.of(key) for key in keys]
    for key, signer in zip([*keys, keys[0]], [*signers, signers[0]], strict=True):
        token = signer.sign({"check_id": "chk_x"})
        decoded = jws.deserialize_compact(token, key, algorithms=["ES256"])
        assert decoded.headers()["kid"] == key.kid
        other = keys[1] if key is keys[0] else keys[0]
        with pytest.raises(Exception, match="signature"):
            jws.deserialize_compact(token, other, algorithms=["ES256"])
