"""C2SP signed notes and checkpoints: interop with Go's sumdb/note, and tamper detection."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.note import (
    MAX_SIGNATURES,
    Checkpoint,
    NoteError,
    format_checkpoint,
    key_hash,
    open_note,
    parse_checkpoint,
    parse_verifier_key,
    sign_note,
    signature_line,
    verifier_key,
    verify_note,
)

# The example of golang.org/x/mod/sumdb/note (note.go and note_test.go): its
# signer key, verifier key and signed note. Ed25519 is deterministic, so our
# signature must come out byte for byte the same.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n"
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgK"
    "vqfqdngotpRZb6KE6RyyBwJnAM=\n"
)

ORIGIN = "creditshare.example/audit"
ROOT = hashlib.sha256(b"some root").digest()


def _go_key() -> Ed25519PrivateKey:
    material = base64.b64decode(GO_SKEY.split("+", 4)[4])
    assert material[0] == 1
    return Ed25519PrivateKey.from_private_bytes(material[1:])


def _key(n: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"test key %d" % n).digest())


LOG_KEY = _key(1)
LOG_VKEY = verifier_key(ORIGIN, LOG_KEY.public_key())


def _signed(size: int = 42, root: bytes = ROOT) -> str:
    return sign_note(format_checkpoint(ORIGIN, size, root), ORIGIN, LOG_KEY)


# --- interoperability ---------------------------------------------------------


def test_signing_reproduces_the_go_reference_note() -> None:
    assert sign_note(GO_TEXT, "PeterNeumann", _go_key()) == GO_NOTE


def test_verifier_key_reproduces_the_go_reference_key() -> None:
    assert verifier_key("PeterNeumann", _go_key().public_key()) == GO_VKEY
    name, kh, public_key = parse_verifier_key(GO_VKEY)
    assert name == "PeterNeumann"
    assert kh.hex() == "c74f20a3"
    assert kh == key_hash("PeterNeumann", public_key)


def test_the_go_reference_note_verifies() -> None:
    assert verify_note(GO_NOTE, [GO_VKEY]) == (GO_TEXT, ["PeterNeumann"])
    assert verify_note(GO_NOTE.encode(), [GO_VKEY]) == (GO_TEXT, ["PeterNeumann"])
    with pytest.raises(NoteError, match="invalid signature"):
        verify_note(GO_NOTE.replace("cryptography", "cryptographY"), [GO_VKEY])


def test_key_hash_is_the_spec_formula() -> None:
    raw = LOG_KEY.public_key().public_bytes_raw()
    expected = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + raw).digest()[:4]
    assert key_hash(ORIGIN, LOG_KEY.public_key()) == expected
    material = base64.b64encode(b"\x01" + raw).decode()
    assert f"{ORIGIN}+{expected.hex()}+{material}" == LOG_VKEY


# --- checkpoints ---------------------------------------------------------------


def test_checkpoint_body_format() -> None:
    body = format_checkpoint(ORIGIN, 1234, ROOT)
    assert body == f"{ORIGIN}\n1234\n{base64.b64encode(ROOT).decode()}\n"
    assert parse_checkpoint(body) == Checkpoint(ORIGIN, 1234, ROOT)


def test_round_trip() -> None:
    note = _signed(42)
    lines = note.split("\n")
    assert lines[3] == ""
    assert lines[4].startswith(f"\u2014 {ORIGIN} ")
    assert note.endswith("\n")
    assert open_note(note, [LOG_VKEY]) == Checkpoint(ORIGIN, 42, ROOT)
    assert open_note(note, [LOG_VKEY], origin=ORIGIN).size == 42


def test_empty_tree_checkpoint() -> None:
    empty = hashlib.sha256(b"").digest()
    assert open_note(_signed(0, empty), [LOG_VKEY]) == Checkpoint(ORIGIN, 0, empty)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("\n42\n", "\n43\n"),  # changed size
        ("\n42\n", "\n420\n"),
        (base64.b64encode(ROOT).decode(), base64.b64encode(b"\x00" * 32).decode()),  # root
        (ORIGIN + "\n", "creditshare.example/other\n"),  # origin line
    ],
)
def test_any_change_to_the_body_breaks_the_signature(old: str, new: str) -> None:
    note = _signed(42)
    tampered = note.replace(old, new, 1)
    assert tampered != note
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(tampered, [LOG_VKEY])


def test_a_changed_signature_is_rejected() -> None:
    note = _signed()
    body, sig_line = note.split("\n\n")
    prefix, blob = sig_line.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(blob))
    raw[10] ^= 1
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(f"{body}\n\n{prefix} {base64.b64encode(bytes(raw)).decode()}\n", [LOG_VKEY])


def test_wrong_key_is_rejected() -> None:
    forged = sign_note(format_checkpoint(ORIGIN, 42, ROOT), ORIGIN, _key(2))
    # Same name, other key: a different key hash, so an unknown key: no known signature.
    with pytest.raises(NoteError, match="no signature by a known key"):
        open_note(forged, [LOG_VKEY])
    # Forging the key hash as well makes it a known key whose signature fails.
    kh_real = key_hash(ORIGIN, LOG_KEY.public_key())
    kh_fake = key_hash(ORIGIN, _key(2).public_key())
    body, line = forged.split("\n\n")
    prefix, blob = line.rstrip("\n").rsplit(" ", 1)
    raw = base64.b64decode(blob)
    assert raw[:4] == kh_fake
    swapped = f"{body}\n\n{prefix} {base64.b64encode(kh_real + raw[4:]).decode()}\n"
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(swapped, [LOG_VKEY])


def test_no_verifier_keys_means_no_trust() -> None:
    with pytest.raises(NoteError, match="no signature by a known key"):
        open_note(_signed(), [])


def test_unknown_signatures_are_ignored_and_rotation_works() -> None:
    body = format_checkpoint(ORIGIN, 7, ROOT)
    witness = _key(3)
    new_key = _key(4)
    note = (
        body
        + "\n"
        + signature_line(body, "witness.example", witness)
        + signature_line(body, ORIGIN, LOG_KEY)
        + signature_line(body, ORIGIN, new_key)
    )
    assert open_note(note, [LOG_VKEY]).size == 7
    new_vkey = verifier_key(ORIGIN, new_key.public_key())
    assert open_note(note, [new_vkey]).size == 7
    witness_vkey = verifier_key("witness.example", witness.public_key())
    _, names = verify_note(note, [LOG_VKEY, new_vkey, witness_vkey])
    assert names == ["witness.example", ORIGIN]


def test_origin_is_checked_when_given() -> None:
    with pytest.raises(NoteError, match=r"not 'someone\.else/log'"):
        open_note(_signed(), [LOG_VKEY], origin="someone.else/log")


@pytest.mark.parametrize(
    ("note", "match"),
    [
        ("no blank line\n\u2014 x AAAA\n", "no blank line"),
        ("body\n\n\u2014 x AAAAAAA=", "ends with a signature line"),
        ("body\n\n-- x AAAAAAA=\n", "malformed signature line"),
        ("body\n\n\u2014 xAAAAAAA=\n", "malformed signature line"),
        ("body\n\n\u2014 x AAAA AAAA\n", "malformed signature line"),
        ("body\n\n\u2014 x not*base64\n", "bad base64"),
        ("body\n\n\u2014 x AAAA\n", "too short"),
        ("bo\tdy\n\n\u2014 x AAAAAAA=\n", "control character"),
        ("body\r\n\n\u2014 x AAAAAAA=\n", "control character"),
        ("body\n\n\u2014 a+b AAAAAAA=\n", "bad key name"),
        ("body\n\n\n", "no signature lines"),
        ("body\n\n\u2014 x AAAAAAA=\n\n", "no signature lines"),
        ("b\ud800dy\n\n\u2014 x AAAAAAA=\n", "not valid UTF-8"),
    ],
)
def test_malformed_notes(note: str, match: str) -> None:
    with pytest.raises(NoteError, match=match):
        verify_note(note, [LOG_VKEY])


def test_non_canonical_base64_is_rejected() -> None:
    note = _signed()
    body, line = note.split("\n\n")
    prefix, blob = line.rstrip("\n").rsplit(" ", 1)
    assert blob.endswith("=")
    # 68 bytes encode with one padding char; the 2 low bits of the last
    # symbol are padding bits and must be zero in the canonical form.
    last = blob[-2]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    bumped = alphabet[alphabet.index(last) ^ 1]
    assert base64.b64decode(blob[:-2] + bumped + "=") == base64.b64decode(blob)
    with pytest.raises(NoteError, match="non-canonical"):
        open_note(f"{body}\n\n{prefix} {blob[:-2]}{bumped}=\n", [LOG_VKEY])


def test_too_many_signatures() -> None:
    body = format_checkpoint(ORIGIN, 1, ROOT)
    line = signature_line(body, ORIGIN, LOG_KEY)
    assert open_note(body + "\n" + line * MAX_SIGNATURES, [LOG_VKEY]).size == 1
    with pytest.raises(NoteError, match="more than"):
        open_note(body + "\n" + line * (MAX_SIGNATURES + 1), [LOG_VKEY])


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (f"{ORIGIN}\n42\n", "three non-empty lines"),
        (f"{ORIGIN}\n042\n{base64.b64encode(ROOT).decode()}\n", "bad tree size"),
        (f"{ORIGIN}\n-1\n{base64.b64encode(ROOT).decode()}\n", "bad tree size"),
        (f"{ORIGIN}\n4 2\n{base64.b64encode(ROOT).decode()}\n", "bad tree size"),
        (f"{ORIGIN}\n42\n{base64.b64encode(ROOT[:31]).decode()}\n", "32 bytes"),
        (f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}\n\nextra\n", "non-empty lines"),
        (f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}", "ends with a newline"),
    ],
)
def test_malformed_checkpoint_bodies(body: str, match: str) -> None:
    with pytest.raises(NoteError, match=match):
        parse_checkpoint(body)


def test_checkpoint_extension_lines_are_allowed() -> None:
    body = format_checkpoint(ORIGIN, 5, ROOT) + "ext line\n"
    assert open_note(sign_note(body, ORIGIN, LOG_KEY), [LOG_VKEY]) == Checkpoint(ORIGIN, 5, ROOT)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("", 1, ROOT), "origin"),
        (("a\nb", 1, ROOT), "origin"),
        ((ORIGIN, -1, ROOT), ">= 0"),
        ((ORIGIN, 1, ROOT[:16]), "32 bytes"),
    ],
)
def test_format_checkpoint_refuses_bad_input(args: tuple[str, int, bytes], match: str) -> None:
    with pytest.raises(NoteError, match=match):
        format_checkpoint(*args)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "tab\tname", "nbsp\u00a0name"])
def test_bad_key_names(name: str) -> None:
    with pytest.raises(NoteError, match="bad key name"):
        verifier_key(name, LOG_KEY.public_key())
    with pytest.raises(NoteError, match="bad key name"):
        sign_note("body\n", name, LOG_KEY)


def test_sign_note_refuses_a_body_without_final_newline() -> None:
    with pytest.raises(NoteError, match="newline"):
        sign_note("body", ORIGIN, LOG_KEY)


def test_mangled_verifier_keys_are_rejected() -> None:
    name, hash_hex, material = GO_VKEY.split("+", 2)
    raw = base64.b64decode(material)
    other_type = base64.b64encode(b"\x02" + raw[1:]).decode()
    bad = [
        f"{name}+{hash_hex}",  # no key
        f"{name}+c74f20a4+{material}",  # wrong hash
        f"{name}+c74f20+{material}",  # short hash
        f"Peter+{hash_hex}+{material}",  # hash of another name
        f"{name}+{hash_hex}+{other_type}",  # type byte
        f"{name}+{hash_hex}+{base64.b64encode(raw[:-1]).decode()}",  # short key
        f"{name}+{hash_hex}+{material[:-1]}",  # broken base64
        f"+{hash_hex}+{material}",  # empty name
    ]
    for vkey in bad:
        with pytest.raises(NoteError):
            parse_verifier_key(vkey)
    # A bad verifier key is a configuration error, not a silently ignored key.
    with pytest.raises(NoteError):
        verify_note(GO_NOTE, [bad[1]])


def test_verifier_key_with_plus_in_base64_parses() -> None:
    # Find a key whose base64 contains '+', the case a naive split would break.
    for n in range(200):
        vkey = verifier_key("k", _key(n).public_key())
        if "+" in vkey.split("+", 2)[2]:
            assert parse_verifier_key(vkey)[2].public_bytes_raw() == (
                _key(n).public_key().public_bytes_raw()
            )
            break
    else:  # pragma: no cover
        pytest.fail("no key with '+' in its base64 among 200")


@settings(max_examples=40, deadline=None)
@given(
    origin=st.text(
        alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), min_size=1
    ).filter(lambda s: "+" not in s and not any(c.isspace() for c in s)),
    size=st.integers(0, 2**63 - 1),
    root=st.binary(min_size=32, max_size=32),
)
def test_property_round_trip(origin: str, size: int, root: bytes) -> None:
    key = _key(9)
    note = sign_note(format_checkpoint(origin, size, root), origin, key)
    vkey = verifier_key(origin, key.public_key())
    assert open_note(note, [vkey], origin=origin) == Checkpoint(origin, size, root)
    other = size + 1 if size < 2**63 - 1 else size - 1
    tampered = note.replace(f"\n{size}\n", f"\n{other}\n", 1)
    with pytest.raises(NoteError):
        open_note(tampered, [vkey])
