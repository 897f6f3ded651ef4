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
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class ReceiptSigner:
    """A signing key made ready for receipts once, for a request or a group of checks:
    joserfc's ``kid`` and ``private_key`` properties, and the type checks, cost more than
    a quarter of the signature itself when asked again for every receipt."""

    private_key: ec.EllipticCurvePrivateKey
    header: bytes
    """The encoded protected header, the same for every receipt of the key."""

    @classmethod
    def of(cls, key: ECKey) -> ReceiptSigner:
        """Raises ``ValueError`` unless ``key`` is a P-256 private key with a kid."""
        private_key = key.private_key
        if (
            not isinstance(private_key, ec.EllipticCurvePrivateKey)
            or not isinstance(private_key.curve, ec.SECP256R1)
            or key.kid is None
        ):
            raise ValueError("receipts are signed with a P-256 private key that has a kid")
        header = _b64url(orjson.dumps({"alg": RECEIPT_ALG, "kid": key.kid, "typ": RECEIPT_TYP}))
        return cls(private_key, header)

    def sign(self, claims: Mapping[str, object]) -> str:
        """``claims`` signed ES256; header ``{alg, kid, typ: credit-check+jwt}``.

        RFC 7515 compact serialisation, written here rather than through joserfc's
        generic path (half the cost per receipt, which every check pays): the signing
        input is ``header.payload``; the signature is R || S, each 32 bytes (RFC 7518
        section 3.4), not the DER that OpenSSL returns.
        """
        signing_input = self.header + b"." + _b64url(orjson.dumps(claims))
        r, s = decode_dss_signature(self.private_key.sign(signing_input, _ES256))
        signature = r.to_bytes(P256_BYTES, "big") + s.to_bytes(P256_BYTES, "big")
        return (signing_input + b"." + _b64url(signature)).decode("ascii")


def sign_receipt(key: ECKey, claims: Mapping[str, object]) -> str:
    """One receipt signed with ``key`` (see :class:`ReceiptSigner`)."""
    return ReceiptSigner.of(key).sign(claims)
