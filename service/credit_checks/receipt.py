"""Receipts: a compact JWS over what a check decided, verifiable offline with the JWKS.

The payload binds the check to the evidence through ``records_digest``, the SHA-256 of
the canonical JSON of the deciding records (described for clients in
``schemas.credit_checks.RECORDS_DIGEST_DESCRIPTION``): an array sorted by record ``id``,
object members sorted by name, no whitespace, non-ASCII as itself, UTF-8. orjson with
``OPT_SORT_KEYS`` writes exactly that (and what ``json.dumps(..., sort_keys=True,
separators=(",", ":"), ensure_ascii=False)`` writes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import orjson
from joserfc import jws
from joserfc.jwk import ECKey

RECEIPT_TYP = "credit-check+jwt"
RECEIPT_ALG = "ES256"


def canonical_json(value: object) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def records_digest(records: Sequence[Mapping[str, object]]) -> str:
    """Hex SHA-256 of the canonical JSON of ``records`` (already sorted by id)."""
    return hashlib.sha256(canonical_json(records)).hexdigest()


def sign_receipt(key: ECKey, claims: Mapping[str, object]) -> str:
    """``claims`` signed ES256 with ``key``; header ``{alg, kid, typ: credit-check+jwt}``."""
    header = {"alg": RECEIPT_ALG, "kid": key.kid, "typ": RECEIPT_TYP}
    return jws.serialize_compact(header, orjson.dumps(claims), key, algorithms=[RECEIPT_ALG])
