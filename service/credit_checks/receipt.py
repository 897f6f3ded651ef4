"""Receipts: a compact JWS over what a check decided, verifiable offline with the JWKS.

The payload binds the check to the evidence through ``records_digest``, the SHA-256 of
the canonical JSON of the deciding records (described for clients in
``schemas.credit_checks.RECORDS_DIGEST_DESCRIPTION``): an array sorted by record ``id``,
object members sorted by name, no whitespace, non-ASCII as itself, UTF-8. orjson with
``OPT_SORT_KEYS`` writes exactly that (and what ``json.dumps(..., sort_keys=True,
separators=(",", ":"), ensure_ascii=False)`` writes).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc.jwk import ECKey

RECEIPT_TYP = "credit-check+jwt"
RECEIPT_ALG = "ES256"


def canonical_json(value: object) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def records_digest(records: Sequence[Mapping[str, object]]) -> str:
    """Hex SHA-256 of the canonical JSON of ``records`` (already sorted by id)."""
    return hashlib.sha256(canonical_json(records)).hexdigest()


_ES256 = ec.ECDSA(hashes.SHA256())
P256_BYTES = 32


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


_SigningKey = tuple[ECKey, ec.EllipticCurvePrivateKey, bytes]
_SIGNING_KEYS: dict[int, _SigningKey] = {}
"""Per signing key (by identity; the key itself is held, so its id stays its own): the
checked private key and the encoded protected header of its receipts. joserfc's ``kid``
and ``private_key`` properties, and the type checks, cost more than a quarter of the
signature itself when asked again for every receipt."""
_MAX_SIGNING_KEYS = 16


def _signing_key(key: ECKey) -> _SigningKey:
    known = _SIGNING_KEYS.get(id(key))
    if known is not None and known[0] is key:
        return known
    private_key = key.private_key
    if (
        not isinstance(private_key, ec.EllipticCurvePrivateKey)
        or not isinstance(private_key.curve, ec.SECP256R1)
        or key.kid is None
    ):
        raise ValueError("receipts are signed with a P-256 private key that has a kid")
    header = _b64url(orjson.dumps({"alg": RECEIPT_ALG, "kid": key.kid, "typ": RECEIPT_TYP}))
    if len(_SIGNING_KEYS) >= _MAX_SIGNING_KEYS:  # keys rotate rarely: start afresh
        _SIGNING_KEYS.clear()
    known = _SIGNING_KEYS[id(key)] = (key, private_key, header)
    return known


def sign_receipt(key: ECKey, claims: Mapping[str, object]) -> str:
    """``claims`` signed ES256 with ``key``; header ``{alg, kid, typ: credit-check+jwt}``.

    RFC 7515 compact serialisation, written here rather than through joserfc's generic
    path (half the cost per receipt, which every check pays): the signing input is
    ``header.payload``; the signature is R || S, each 32 bytes (RFC 7518 section 3.4),
    not the DER that OpenSSL returns.
    """
    _, private_key, header = _signing_key(key)
    signing_input = header + b"." + _b64url(orjson.dumps(claims))
    r, s = decode_dss_signature(private_key.sign(signing_input, _ES256))
    signature = r.to_bytes(P256_BYTES, "big") + s.to_bytes(P256_BYTES, "big")
    return (signing_input + b"." + _b64url(signature)).decode("ascii")
