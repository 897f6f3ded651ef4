"""Encryption at rest: authenticated, bound to its context, versioned, keyed per purpose."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.crypto import DecryptionError, KeyRing, load_keyring
from service.personal_data import mask_id_number, mask_name
from service.settings import Settings


def test_round_trip_and_binding() -> None:
    ring = KeyRing(b"m" * 32)
    token = ring.encrypt("张三", purpose="personal-data", context="92120101MA0000001X")
    assert token.startswith("v1.")
    assert "张三" not in token
    assert ring.decrypt(token, purpose="personal-data", context="92120101MA0000001X") == "张三"
    with pytest.raises(DecryptionError):
        ring.decrypt(token, purpose="personal-data", context="another-merchant")
    with pytest.raises(DecryptionError):
        ring.decrypt(token, purpose="signing-key", context="92120101MA0000001X")
    with pytest.raises(DecryptionError):
        KeyRing(b"n" * 32).decrypt(token, purpose="personal-data", context="92120101MA0000001X")
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(DecryptionError):
        ring.decrypt(tampered, purpose="personal-data", context="92120101MA0000001X")


def test_nonces_differ() -> None:
    ring = KeyRing(b"m" * 32)
    assert ring.encrypt("x", purpose="p") != ring.encrypt("x", purpose="p")


def test_lookup_hash_is_keyed() -> None:
    assert KeyRing(b"a" * 32).lookup_hash("v", purpose="p") != KeyRing(b"b" * 32).lookup_hash(
        "v", purpose="p"
    )


def test_dev_master_key_is_generated_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, master_key=None)
    first = load_keyring(settings)
    assert (tmp_path / "master.key").stat().st_mode & 0o777 == 0o600
    assert load_keyring(settings).master == first.master


def test_masking() -> None:
    assert mask_name("张三") == "张*"
    assert mask_name("欧阳娜娜") == "欧***"
    assert mask_id_number("120101199001011234") == "1201**********1234"
