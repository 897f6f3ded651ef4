"""C2SP signed notes (c2sp.org/signed-note) carrying tlog checkpoints (c2sp.org/tlog-checkpoint).

A checkpoint body is three lines, each ending in a newline::

    <origin>
    <tree size in decimal>
    <base64 of the 32-byte root hash>

followed (in the signed note) by a blank line and one signature line per key::

    — <key name> <base64(4-byte key hash || 64-byte Ed25519 signature)>

The signature covers the body including its final newline. The key hash is
``SHA-256(key name || 0x0A || 0x01 || public key)[:4]`` and a verifier key is
written ``<name>+<hex key hash>+<base64(0x01 || public key)>``, so the notes and
keys interoperate with Go's ``golang.org/x/mod/sumdb/note`` and the
transparency-dev tooling (witnesses, monitors).

Verification follows the spec: signatures by unknown keys are ignored (that is
what allows key rotation and witness cosignatures); a signature by a known key
that does not verify rejects the whole note; a note with no verified signature
from a known key is rejected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "MAX_SIGNATURES",
    "Checkpoint",
    "NoteError",
    "format_checkpoint",
    "key_hash",
    "open_note",
    "parse_checkpoint",
    "parse_verifier_key",
    "sign_note",
    "signature_line",
    "verifier_key",
    "verify_note",
]

MAX_SIGNATURES: Final = 100
"""Signature lines accepted in one note (the spec requires at least 16)."""

_ED25519: Final = b"\x01"  # signature type byte of Ed25519 in c2sp.org/signed-note
_SIG_PREFIX: Final = "\u2014 "  # em dash, space
_SIZE_RE: Final = re.compile(r"0|[1-9][0-9]{0,18}")
_HEX8_RE: Final = re.compile(r"[0-9a-fA-F]{8}")
_CONTROL_RE: Final = re.compile(r"[\x00-\x09\x0b-\x1f]")


class NoteError(ValueError):
    """A note or key is malformed, signed by no known key, or carries a bad signature."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A verified tree head: the first ``size`` leaves of log ``origin`` have root ``root``."""

    origin: str
    size: int
    root: bytes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    """Strict standard base64: padding required, nothing outside the alphabet, canonical."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise NoteError(f"bad base64 {text!r}") from exc
    if _b64(raw) != text:  # non-zero padding bits would make two encodings of one value
        raise NoteError(f"non-canonical base64 {text!r}")
    return raw


def _check_key_name(name: str) -> None:
    if not name or "+" in name or any(c.isspace() for c in name):
        raise NoteError(f"bad key name {name!r}: non-empty, no spaces, no '+'")
    _check_text(name, "key name")


def _check_text(text: str, what: str) -> None:
    """Valid UTF-8 with no ASCII control character other than newline."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise NoteError(f"{what} is not valid UTF-8") from exc
    if _CONTROL_RE.search(text):
        raise NoteError(f"{what} holds a control character")


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes_raw()


def key_hash(key_name: str, public_key: Ed25519PublicKey) -> bytes:
    """The 4-byte key ID of an Ed25519 key: ``SHA-256(name || 0x0A || 0x01 || key)[:4]``."""
    data = key_name.encode("utf-8") + b"\n" + _ED25519 + _raw_public(public_key)
    return hashlib.sha256(data).digest()[:4]


def format_checkpoint(origin: str, size: int, root: bytes) -> str:
    """The checkpoint note body: origin, size and base64 root, one per line."""
    if not origin or "\n" in origin:
        raise NoteError("the origin is one non-empty line")
    _check_text(origin, "origin")
    if size < 0:
        raise NoteError("a tree size is >= 0")
    if len(root) != 32:
        raise NoteError("a root hash is 32 bytes")
    return f"{origin}\n{size}\n{_b64(root)}\n"


def parse_checkpoint(body: str) -> Checkpoint:
    """Read a checkpoint body (already verified). Extension lines after the root are allowed."""
    if not body.endswith("\n"):
        raise NoteError("a checkpoint ends with a newline")
    lines = body[:-1].split("\n")
    if len(lines) < 3 or any(not line for line in lines):
        raise NoteError("a checkpoint has at least three non-empty lines")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not _SIZE_RE.fullmatch(size_text):
        raise NoteError(f"bad tree size {size_text!r}")
    root = _unb64(root_text)
    if len(root) != 32:
        raise NoteError("a root hash is 32 bytes")
    return Checkpoint(origin=origin, size=int(size_text), root=root)


def signature_line(body: str, key_name: str, private_key: Ed25519PrivateKey) -> str:
    """One signature line (with its newline) over ``body``; several can follow one blank line."""
    _check_key_name(key_name)
    if not body.endswith("\n"):
        raise NoteError("a note body ends with a newline")
    _check_text(body, "note body")
    signature = private_key.sign(body.encode("utf-8"))
    kh = key_hash(key_name, private_key.public_key())
    return f"{_SIG_PREFIX}{key_name} {_b64(kh + signature)}\n"


def sign_note(body: str, key_name: str, private_key: Ed25519PrivateKey) -> str:
    """The signed note: ``body``, a blank line and the signature line of ``key_name``."""
    return body + "\n" + signature_line(body, key_name, private_key)


def verifier_key(key_name: str, public_key: Ed25519PublicKey) -> str:
    """The verifier key string ``<name>+<hex key hash>+<base64(0x01 || key)>``."""
    _check_key_name(key_name)
    raw = _raw_public(public_key)
    return f"{key_name}+{key_hash(key_name, public_key).hex()}+{_b64(_ED25519 + raw)}"


def parse_verifier_key(text: str) -> tuple[str, bytes, Ed25519PublicKey]:
    """Split a verifier key into (name, 4-byte key hash, public key), checking the hash."""
    parts = text.split("+", 2)  # the base64 part may itself contain '+'
    if len(parts) != 3:
        raise NoteError("a verifier key is <name>+<hash>+<key>")
    name, hash_hex, key_b64 = parts
    _check_key_name(name)
    if not _HEX8_RE.fullmatch(hash_hex):
        raise NoteError("a verifier key hash is 8 hex digits")
    material = _unb64(key_b64)
    if len(material) != 33 or material[:1] != _ED25519:
        raise NoteError("only Ed25519 verifier keys (type 0x01, 32 bytes) are supported")
    public_key = Ed25519PublicKey.from_public_bytes(material[1:])
    expected = key_hash(name, public_key)
    if bytes.fromhex(hash_hex) != expected:
        raise NoteError(f"verifier key {name!r}: key hash does not match the key")
    return name, expected, public_key


def verify_note(note: str | bytes, verifier_keys: Sequence[str]) -> tuple[str, list[str]]:
    """Check the signatures of a signed note; return its body and the names that verified.

    Raises ``NoteError`` when the note is malformed, when a signature by a
    known key (same name *and* key hash) fails, or when no known key signed it.
    """
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError("a note is UTF-8 text") from exc
    _check_text(note, "note")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("malformed note: no blank line before the signatures")
    body, block = note[: split + 1], note[split + 2 :]
    if not block:
        raise NoteError("malformed note: no signature lines")
    if not block.endswith("\n"):
        raise NoteError("malformed note: it ends with a signature line and a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"more than {MAX_SIGNATURES} signatures")

    known: dict[tuple[str, bytes], Ed25519PublicKey] = {}
    for vk in verifier_keys:
        name, kh, public_key = parse_verifier_key(vk)
        known[(name, kh)] = public_key

    message = body.encode("utf-8")
    verified: list[str] = []
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise NoteError(f"malformed signature line {line!r}")
        name, sep, sig_b64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not sep or " " in sig_b64:
            raise NoteError(f"malformed signature line {line!r}")
        _check_key_name(name)
        blob = _unb64(sig_b64)
        if len(blob) < 5:
            raise NoteError(f"signature by {name!r} is too short")
        signer = known.get((name, blob[:4]))
        if signer is None:
            continue  # an unknown key (e.g. a witness): ignore it, as the spec requires
        try:
            signer.verify(blob[4:], message)
        except InvalidSignature as exc:
            raise NoteError(f"invalid signature by {name!r}") from exc
        if name not in verified:
            verified.append(name)
    if not verified:
        raise NoteError("no signature by a known key")
    return body, verified


def open_note(
    note: str | bytes, verifier_keys: Sequence[str], *, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint note and return its tree head.

    With ``origin`` given, a checkpoint of any other log is refused too.
    """
    body, _ = verify_note(note, verifier_keys)
    checkpoint = parse_checkpoint(body)
    if origin is not None and checkpoint.origin != origin:
        raise NoteError(f"checkpoint is for {checkpoint.origin!r}, not {origin!r}")
    return checkpoint
