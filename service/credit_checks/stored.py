"""How an issued check is kept: its exact JSON bytes, sealed if they hold personal data.

A check that shows the unmasked name of an individual business's owner carries
personal information (PIPL), which is stored only encrypted: such a body is sealed with
the personal-data key, bound to the merchant's code and the check id. Any other body is
stored as the JSON text itself. Reading gives back the very bytes first returned.
"""

from __future__ import annotations

from service.crypto import KeyRing
from service.personal_data import seal, unseal


def _field(check_id: str) -> str:
    return f"credit_check/{check_id}"


def store_form(keyring: KeyRing, body: bytes, *, check_id: str, uscc: str, sealed: bool) -> str:
    text = body.decode("utf-8")
    if not sealed:
        return text
    return seal(keyring, text, uscc=uscc, field=_field(check_id))


def issued_bytes(keyring: KeyRing, stored: str, *, check_id: str, uscc: str) -> bytes:
    """The body as it was returned when issued (a JSON object always starts with ``{``)."""
    if stored.startswith("{"):
        return stored.encode("utf-8")
    return unseal(keyring, stored, uscc=uscc, field=_field(check_id)).encode("utf-8")
