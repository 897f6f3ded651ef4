"""How an issued check is kept: its exact JSON bytes, sealed if they hold personal data.

A check that shows the unmasked name of an individual business's owner carries
personal information (PIPL), which is stored only encrypted: such a body is sealed with
the personal-data key, bound to the merchant's code and the check id. Any other body is
stored as the JSON text itself. Reading gives back the very bytes first returned, to a
reader whose token may see all they show (:func:`visible_bytes`).
"""

from __future__ import annotations

import orjson

from service.crypto import KeyRing
from service.personal_data import mask_name, seal, unseal


def _field(check_id: str) -> str:
    return f"credit_check/{check_id}"


def store_form(keyring: KeyRing, body: bytes, *, check_id: str, uscc: str, sealed: bool) -> str:
    text = body.decode("utf-8")
    if not sealed:
        return text
    return seal(keyring, text, uscc=uscc, field=_field(check_id))


def issued_bytes(keyring: KeyRing, stored: str, *, check_id: str, uscc: str) -> bytes:
    """The body as it was returned when issued."""
    if not is_sealed(stored):
        return stored.encode("utf-8")
    return unseal(keyring, stored, uscc=uscc, field=_field(check_id)).encode("utf-8")


def is_sealed(stored: str) -> bool:
    """Whether the stored body holds unmasked personal data, kept sealed (the JSON text of
    any other body, an object, always starts with ``{``; a sealed token never does)."""
    return not stored.startswith("{")


def visible_bytes(issued: bytes, *, sealed: bool, may_unmask: bool, may_see_records: bool) -> bytes:
    """The issued body as the reading token may see it: the issued bytes themselves, unless
    they show what that token's scopes do not allow. A check issued with the owner's name
    unmasked (``credit:pii`` and a consent reference) shows it masked to a token without
    ``credit:pii``; one issued with its ``records`` (``credit:detail``) shows none to a token
    without ``credit:detail``. Everything else, the receipt included, is as issued (the
    receipt binds neither the name nor the records' content, only their digest)."""
    hide_name = sealed and not may_unmask
    hide_records = not may_see_records and b'"records":' in issued
    if not (hide_name or hide_records):
        return issued
    document = orjson.loads(issued)
    if hide_name:
        merchant = document["merchant"]
        name = merchant.get("legal_representative")
        if isinstance(name, str):
            merchant["legal_representative"] = mask_name(name)
    if hide_records:
        document.pop("records", None)
    return orjson.dumps(document)
