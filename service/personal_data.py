"""Personal data of natural persons (PIPL): masking and encryption at rest.

The owner of an individual business (USCC prefix ``92``) is a natural person:
their name and id number are stored encrypted (bound to the merchant's code as
associated data), next to a masked copy that is the only form shown without
``credit:pii`` and a consent reference.
"""

from __future__ import annotations

from service.crypto import KeyRing

PURPOSE = "personal-data"


def mask_name(name: str) -> str:
    """``张三`` -> ``张*``, ``欧阳娜娜`` -> ``欧***``; Latin names keep their first letter."""
    name = name.strip()
    if not name:
        return name
    return name[0] + "*" * max(1, len(name) - 1)


def mask_owner_in_name(name: str, owner: str) -> str | None:
    """``name`` with every occurrence of the owner's name masked (an individual business
    without a trade name is registered under its owner's name, and trade names often hold
    it: ``河西区张建国小吃店`` -> ``河西区张**小吃店``); None if ``name`` does not hold it.
    A one-character owner name is not looked for (it would mask unrelated characters)."""
    owner = owner.strip()
    if len(owner) < 2 or owner not in name:
        return None
    return name.replace(owner, mask_name(owner))


def mask_id_number(number: str) -> str:
    """``120101199001011234`` -> ``1201**********1234`` (first 4 and last 4 kept)."""
    number = number.strip()
    if len(number) <= 8:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


def seal(keyring: KeyRing, value: str, *, uscc: str, field: str) -> str:
    return keyring.encrypt(value, purpose=PURPOSE, context=f"{uscc}/{field}")


def unseal(keyring: KeyRing, token: str, *, uscc: str, field: str) -> str:
    return keyring.decrypt(token, purpose=PURPOSE, context=f"{uscc}/{field}")


INDIVIDUAL_BUSINESS_PREFIX = "92"


def is_personal(entity_type: str, uscc: str) -> bool:
    """Whether the merchant's representative is protected personal data: an individual
    business's owner, by its type or by its code's prefix (a ``92`` code loaded with
    another type is still a natural person's business: when the two disagree, the
    owner is protected)."""
    return entity_type == "INDIVIDUAL_BUSINESS" or uscc.startswith(INDIVIDUAL_BUSINESS_PREFIX)
