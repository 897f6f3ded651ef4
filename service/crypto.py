"""Encryption at rest with keys derived from the master key.

One master key (``CREDITSHARE_MASTER_KEY``; in ``dev`` generated once under the
data directory) never encrypts anything itself. HKDF derives one key per purpose
and version, so that a field key, the signing-key wrapping key and the lookup
HMAC key are independent, and a key version can be retired without touching
the others. Ciphertexts carry their version: ``v1.<base64url(nonce || ct)>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from service.settings import Settings

CURRENT_VERSION = "v1"
_NONCE_BYTES = 12


class DecryptionError(ValueError):
    """A ciphertext that is malformed, of an unknown version, or fails authentication."""


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(master: bytes, purpose: str, version: str) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"creditshare",
        info=f"creditshare/{purpose}/{version}".encode(),
    )
    return hkdf.derive(master)


@dataclass(frozen=True)
class KeyRing:
    """Derived keys for one master key. Thread-safe and cheap to share; each derived key
    is computed once (HKDF is most of the cost of sealing a short field)."""

    master: bytes = field(repr=False)
    _derived: dict[tuple[str, str], bytes] = field(default_factory=dict, repr=False, compare=False)

    def _key(self, purpose: str, version: str) -> bytes:
        key = self._derived.get((purpose, version))
        if key is None:
            key = self._derived[(purpose, version)] = _derive(self.master, purpose, version)
        return key

    def _aead(self, purpose: str, version: str) -> AESGCM:
        return AESGCM(self._key(purpose, version))

    def encrypt(self, plaintext: str, *, purpose: str, context: str = "") -> str:
        """Encrypt text; ``context`` (e.g. a row id) is bound as associated data."""
        nonce = os.urandom(_NONCE_BYTES)
        aead = self._aead(purpose, CURRENT_VERSION)
        sealed = aead.encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))
        return f"{CURRENT_VERSION}.{_b64e(nonce + sealed)}"

    def decrypt(self, token: str, *, purpose: str, context: str = "") -> str:
        version, _, body = token.partition(".")
        if version != CURRENT_VERSION or not body:
            raise DecryptionError("unknown ciphertext version")
        try:
            raw = _b64d(body)
            aead = self._aead(purpose, version)
            plain = aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode("utf-8"))
        except Exception as exc:  # InvalidTag, binascii errors
            raise DecryptionError("ciphertext failed authentication") from exc
        return plain.decode("utf-8")

    def lookup_hash(self, value: str, *, purpose: str) -> str:
        """Keyed hash for equality lookups of encrypted values (no plaintext index)."""
        key = self._key(f"lookup/{purpose}", CURRENT_VERSION)
        return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def _master_from_text(text: str) -> bytes:
    text = text.strip()
    try:
        raw = _b64d(text)
        if len(raw) >= 32:
            return raw
    except ValueError:
        pass
    return hashlib.sha256(text.encode("utf-8")).digest()


def load_keyring(settings: Settings) -> KeyRing:
    """The key ring for these settings, generating a dev master key on first use."""
    if settings.master_key:
        return KeyRing(_master_from_text(settings.master_key))
    if settings.env == "prod":  # Settings already refuses this; kept as a last guard.
        raise RuntimeError("CREDITSHARE_MASTER_KEY is required in prod")
    path = Path(settings.data_dir) / "master.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(_b64e(secrets.token_bytes(32)))
    return KeyRing(_master_from_text(path.read_text()))
