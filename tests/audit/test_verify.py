"""Canonical event encoding and verification of a sealed log: every kind of tampering is
found, and pinned to the exact seq."""

from __future__ import annotations

import copy
import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.canonical import MAX_DEPTH, canonical_event_bytes, event_leaf_hash
from audit.merkle import root_hash
from audit.note import format_checkpoint, sign_note, verifier_key
from audit.verify import CheckpointSource, VerifyResult, verify_log

ORIGIN = "creditshare.test/audit"
KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"audit log key").digest())
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"someone else").digest())
VKEY = verifier_key(ORIGIN, KEY.public_key())


def _reference_json(body: object) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# --- canonical encoding ---------------------------------------------------------


def test_canonical_form_is_sorted_compact_utf8() -> None:
    event = {"b": 1, "a": {"z": None, "y": [True, False, "é中"]}, "c": "x"}
    assert canonical_event_bytes(event) == (
        '{"a":{"y":[true,false,"é中"],"z":null},"b":1,"c":"x"}'.encode()
    )


def test_seq_is_the_only_field_left_out() -> None:
    base: dict[str, object] = {"id": "evt_1", "details": {"seq": 3}, "status": 200}
    expected = canonical_event_bytes(base)
    assert canonical_event_bytes({**base, "seq": None}) == expected
    assert canonical_event_bytes({**base, "seq": 17}) == expected
    assert b'"seq":3' in expected  # only the top-level seq is dropped
    for key, value in [("id", "evt_2"), ("status", 201), ("details", {"seq": 4}), ("ip", None)]:
        assert canonical_event_bytes({**base, key: value}) != expected, key


def test_leaf_hash_of_an_event() -> None:
    event = {"id": "evt_1", "seq": 9}
    assert event_leaf_hash(event) == hashlib.sha256(b'\x00{"id":"evt_1"}').digest()


@pytest.mark.parametrize(
    "bad",
    [
        {"amount": 1.5},
        {"nested": {"deep": [1, 2.0]}},
        {"nan": float("nan")},
        {"list": [{"x": 1e3}]},
    ],
)
def test_floats_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(TypeError, match="floats are not allowed"):
        canonical_event_bytes(bad)


@pytest.mark.parametrize(
    "bad",
    [
        {"when": datetime(2025, 1, 1, tzinfo=UTC)},
        {"raw": b"bytes"},
        {"money": Decimal("1.00")},
        {"set": {1, 2}},
        {"nested": {1: "int key"}},
    ],
)
def test_other_types_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        canonical_event_bytes(bad)


def test_depth_and_invalid_unicode_are_refused() -> None:
    deep: object = 1
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(ValueError, match="nested deeper"):
        canonical_event_bytes({"deep": deep})
    with pytest.raises(ValueError, match="not valid Unicode"):
        canonical_event_bytes({"s": "lone \ud800 surrogate"})


class Colour(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


def test_equivalent_inputs_encode_alike() -> None:
    plain = {"a": [1, 2], "b": {"c": "red"}, "d": 3, "e": True}
    proxy = MappingProxyType({"c": Colour.RED})
    variants: list[Mapping[str, object]] = [
        MappingProxyType({"a": (1, 2), "b": proxy, "d": 3, "e": True}),
        {"e": True, "d": Level.HIGH, "b": {"c": Colour.RED}, "a": [1, 2]},
    ]
    for variant in variants:
        assert canonical_event_bytes(variant) == canonical_event_bytes(plain)
    assert canonical_event_bytes({"e": True}) != canonical_event_bytes({"e": 1})


def test_big_integers_use_the_reference_encoding() -> None:
    body = {"big": 2**70, "neg": -(2**65), "s": "é"}
    assert canonical_event_bytes(body) == _reference_json(body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(event=st.dictionaries(st.text(max_size=8), json_values, max_size=8))
def test_property_matches_the_stdlib_reference(event: dict[str, object]) -> None:
    body = {k: v for k, v in event.items() if k != "seq"}
    assert canonical_event_bytes(event) == _reference_json(body)
    assert json.loads(canonical_event_bytes(event)) == body


# --- a small sealed log ------------------------------------------------------------


def make_event(seq: int) -> dict[str, object]:
    return {
        "id": f"evt_{seq:06d}",
        "seq": seq,
        "occurred_at": f"2025-03-01T10:{seq // 60 % 60:02d}:{seq % 60:02d}.000000Z",
        "actor": {"client_id": f"cli_{seq % 3}", "name": "Platform Ä", "kind": "client"},
        "action": "credit_check.create",
        "target": {"type": "credit_check", "id": f"chk_{seq}"},
        "uscc": "91310000MA1FL8XQ30",
        "purpose": "ONBOARDING",
        "outcome": "success",
        "status": 201,
        "request_id": f"req_{seq}",
        "ip": "203.0.113.7",
        "details": {"verdict": "CLEAR", "n": seq},
    }


@dataclass
class Log:
    events: list[dict[str, object]]

    @property
    def leaves(self) -> list[bytes]:
        return [event_leaf_hash(e) for e in self.events]

    def checkpoint(self, size: int, key: Ed25519PrivateKey = KEY, origin: str = ORIGIN) -> str:
        body = format_checkpoint(origin, size, root_hash(self.leaves[:size]))
        return sign_note(body, ORIGIN, key)

    def stream(self) -> list[tuple[int, Mapping[str, object]]]:
        return [(int(str(e["seq"])), e) for e in self.events]

    def copy(self) -> Log:
        return Log(copy.deepcopy(self.events))


def build(n: int) -> Log:
    return Log([make_event(seq) for seq in range(1, n + 1)])


def renumber(log: Log) -> Log:
    for position, event in enumerate(log.events, start=1):
        event["seq"] = position
    return log


N = 50
SIZES = (10, 25, 50)


def run(
    log: Log,
    checkpoints: list[str],
    stored: list[bytes] | None = None,
    **kwargs: object,
) -> VerifyResult:
    return verify_log(
        log.stream(),
        checkpoints,
        [VKEY],
        stored_leaf_hashes=stored,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def sealed() -> tuple[Log, list[str], list[bytes]]:
    log = build(N)
    return log, [log.checkpoint(s) for s in SIZES], log.leaves


def test_an_intact_log_verifies(sealed: tuple[Log, list[str], list[bytes]]) -> None:
    log, checkpoints, stored = sealed
    assert run(log, checkpoints) == VerifyResult(True, N, None, None)
    assert run(log, checkpoints, stored) == VerifyResult(True, N, None, None)
    # Checkpoints in any order, and in the shapes the service and the bundle use.
    shuffled: list[CheckpointSource] = [
        checkpoints[2],
        {"size": 10, "signed_note": checkpoints[0]},
        checkpoints[1],
    ]
    assert verify_log(log.stream(), shuffled, [VKEY], origin=ORIGIN).ok


def test_checkpoint_objects_with_a_signed_note_attribute(
    sealed: tuple[Log, list[str], list[bytes]],
) -> None:
    @dataclass
    class Row:
        signed_note: str

    log, checkpoints, _ = sealed
    assert verify_log(log.stream(), [Row(c) for c in checkpoints], [VKEY]).ok


def test_an_empty_log_verifies() -> None:
    assert verify_log([], [], [VKEY]) == VerifyResult(True, 0, None, None)


def test_events_without_any_checkpoint_are_not_sealed() -> None:
    result = verify_log(build(3).stream(), [], [VKEY])
    assert (result.ok, result.first_bad_seq) == (False, 1)
    assert "not sealed" in (result.problem or "")


# --- altered events -------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        lambda e: e.__setitem__("outcome", "denied"),
        lambda e: e.__setitem__("status", 403),
        lambda e: e.__setitem__("occurred_at", "2025-03-01T11:00:00.000000Z"),
        lambda e: e["actor"].__setitem__("name", "Someone Else"),  # nested
        lambda e: e.__setitem__("extra", "added field"),
        lambda e: e.pop("uscc"),
        lambda e: e.__setitem__("ip", None),
    ],
)
def test_an_altered_event_is_pinpointed_with_stored_leaves(
    sealed: tuple[Log, list[str], list[bytes]], change: object
) -> None:
    log, checkpoints, stored = sealed
    tampered = log.copy()
    change(tampered.events[16])  # type: ignore[operator]
    result = run(tampered, checkpoints, stored)
    assert (result.ok, result.first_bad_seq) == (False, 17), result
    assert "event seq 17 is not the event that was sealed" in (result.problem or "")


def test_without_stored_leaves_the_checkpoint_range_is_reported(
    sealed: tuple[Log, list[str], list[bytes]],
) -> None:
    log, checkpoints, _ = sealed
    tampered = log.copy()
    tampered.events[16]["status"] = 500
    result = run(tampered, checkpoints)
    assert (result.ok, result.first_bad_seq) == (False, 11)
    assert "events 11..25" in (result.problem or "")


def test_rewritten_stored_leaves_are_not_trusted(
    sealed: tuple[Log, list[str], list[bytes]],
) -> None:
    log, checkpoints, _ = sealed
    tampered = log.copy()
    tampered.events[16]["status"] = 500
    # The attacker recomputed the stored leaf too: the stored leaves no longer
    # reproduce the signed root, so they cannot be used to pinpoint.
    result = run(tampered, checkpoints, tampered.leaves)
    assert (result.ok, result.first_bad_seq) == (False, 11)


def test_stored_leaves_that_miss_the_root_do_not_mislead(
    sealed: tuple[Log, list[str], list[bytes]],
) -> None:
    log, checkpoints, stored = sealed
    tampered = log.copy()
    tampered.events[16]["status"] = 500
    damaged = [*stored]
    damaged[4] = hashlib.sha256(b"not the sealed leaf").digest()
    # Seq 5 differs from its stored leaf, but the stored leaves do not reproduce
    # the signed root, so that difference proves nothing about seq 5.
    result = run(tampered, checkpoints, damaged)
    assert (result.ok, result.first_bad_seq) == (False, 11)


def test_a_checkpoint_per_event_pinpoints_without_stored_leaves() -> None:
    log = build(30)
    checkpoints = [log.checkpoint(s) for s in range(1, 31)]
    tampered = log.copy()
    tampered.events[22]["details"] = {"verdict": "RESTRICTED", "n": 23}
    result = run(tampered, checkpoints)
    assert (result.ok, result.first_bad_seq) == (False, 23)
    assert result.checked == 30


# --- deleted events ---------------------------------------------------------------------


def test_a_deleted_event_is_pinpointed(sealed: tuple[Log, list[str], list[bytes]]) -> None:
    log, checkpoints, _ = sealed
    tampered = log.copy()
    del tampered.events[16]
    result = run(tampered, checkpoints)
    assert (result.ok, result.first_bad_seq, result.checked) == (False, 17, 16)
    assert "event seq 17 is missing" in (result.problem or "")


def test_deleted_tail_events_are_found(sealed: tuple[Log, list[str], list[bytes]]) -> None:
    log, checkpoints, _ = sealed
    tampered = log.copy()
    del tampered.events[47:]
    result = run(tampered, checkpoints)
    assert (result.ok, result.first_bad_seq) == (False, 48)
    assert "events 48..50 are missing" in (result.problem or "")


def test_a_deleted_and_renumbered_event_is_pinpointed(
    sealed: tuple[Log, list[str], list[bytes]],
) -> None:
    log, checkpoints, stored = sealed
    tampered = log.copy()
    del tampered.events[16]
    tampered.events.append(make_event(0))  # keep the count, so nothing is missing at the end
    renumber(tampered)
    result = run(tampered, checkpoints, stored)
    assert (result.ok, result.first_bad_seq) == (False, 17)


# --- inserted events ---------------------------------------------------------------------


def test_a_duplicate_seq_is_found(sealed: tuple[Log, list[str], list[bytes]]) -> None:
    log, checkpoints, _ = sealed
    tampered = log.copy()
    forged = make_event(17)
    forged["outcome"] = "denied"
    tampered.events.insert(17, forged)
    result = run(tampered, checkpoints)
    assert (result.ok, result.first_bad_seq) == (False, 17)
    assert "comes again" in (result.problem or "")


def test_an_event_beyond_the_last_checkpoint_is_found(
    sealed: tuple[Log, list[str], list[bytes]],
) -> None:
    log, checkpoints, _ = sealed
    tampered = log.copy()
    tampered.events.append(make_event(51))
    result = run(tampered, checkpoints)
    assert (result.ok, result.first_bad_seq, result.checked) == (False, 51, 50)
    assert "not sealed by any authentic checkpoint" in (result.problem or "")


def test_an_inserted_and_renumbered_event_is_pinpointed(
    sealed: tuple[Log, list[str], list[bytes]],
) -> None:
    log, checkpoints, stored = sealed
    tampered = log.copy()
    tampered.events.insert(16, make_event(999))
    tampered.events.pop()  # so the tail is not "beyond the checkpoint"
    renumber(tampered)
    result = run(tampered, checkpoints, stored)
    assert (result.ok, result.first_bad_seq) == (False, 17)


# --- reordered events ---------------------------------------------------------------------


def test_swapped_events_are_pinpointed(sealed: tuple[Log, list[str], list[bytes]]) -> None:
    log, checkpoints, stored = sealed
    tampered = log.copy()
    tampered.events[19], tampered.events[20] = tampered.events[20], tampered.events[19]
    renumber(tampered)  # the seq column was rewritten to match the new order
    result = run(tampered, checkpoints, stored)
    assert (result.ok, result.first_bad_seq) == (False, 20)


def test_an_out_of_order_stream_is_found(sealed: tuple[Log, list[str], list[bytes]]) -> None:
    log, checkpoints, _ = sealed
    stream = log.stream()
    stream[19], stream[20] = stream[20], stream[19]
    result = verify_log(stream, checkpoints, [VKEY])
    assert (result.ok, result.first_bad_seq) == (False, 20)


def test_an_event_whose_own_seq_disagrees(sealed: tuple[Log, list[str], list[bytes]]) -> None:
    log, checkpoints, _ = sealed
    stream = log.stream()
    stream[4] = (5, {**stream[4][1], "seq": 6})
    result = verify_log(stream, checkpoints, [VKEY])
    assert (result.ok, result.first_bad_seq) == (False, 5)


def test_an_event_that_cannot_be_encoded(sealed: tuple[Log, list[str], list[bytes]]) -> None:
    log, checkpoints, _ = sealed
    tampered = log.copy()
    tampered.events[7]["status"] = 201.0
    result = run(tampered, checkpoints)
    assert (result.ok, result.first_bad_seq) == (False, 8)
    assert "canonical" in (result.problem or "")


# --- forged and inconsistent checkpoints ----------------------------------------------------


def _replace_root(note: str, root: bytes) -> str:
    lines = note.split("\n")
    lines[2] = format_checkpoint(ORIGIN, 1, root).split("\n")[2]
    return "\n".join(lines)


def test_a_checkpoint_with_a_changed_root_is_forged(
    sealed: tuple[Log, list[str], list[bytes]],
) -> None:
    log, checkpoints, _ = sealed
    forged = [checkpoints[0], _replace_root(checkpoints[1], b"\x00" * 32), checkpoints[2]]
    result = run(log, forged)
    assert (result.ok, result.first_bad_seq) == (False, 11)
    assert "checkpoint #1 of size 25 is not authentic: invalid signature" in (result.problem or "")


def test_a_checkpoint_signed_by_another_key_is_forged(
    sealed: tuple[Log, list[str], list[bytes]],
) -> None:
    log, checkpoints, _ = sealed
    # A rewritten log sealed by someone without the log's key.
    rewritten = log.copy()
    rewritten.events[30]["outcome"] = "error"
    result = run(rewritten, [*checkpoints[:2], rewritten.checkpoint(50, key=OTHER_KEY)])
    assert (result.ok, result.first_bad_seq) == (False, 26)
    assert "not authentic: no signature by a known key" in (result.problem or "")


def test_a_checkpoint_of_another_log_is_refused(
    sealed: tuple[Log, list[str], list[bytes]],
) -> None:
    log, checkpoints, _ = sealed
    other = log.checkpoint(50, origin="other.test/log")
    result = run(log, [*checkpoints[:2], other], origin=ORIGIN)
    assert (result.ok, result.first_bad_seq) == (False, 26)
    assert "not 'creditshare.test/audit'" in (result.problem or "")


def test_a_checkpoint_that_is_not_a_note(sealed: tuple[Log, list[str], list[bytes]]) -> None:
    log, checkpoints, _ = sealed
    result = run(log, [*checkpoints, "garbage"])
    assert not result.ok
    assert result.first_bad_seq is None
    assert "of unknown size" in (result.problem or "")


def test_a_log_rewritten_and_resigned_is_inconsistent(
    sealed: tuple[Log, list[str], list[bytes]],
) -> None:
    log, checkpoints, stored = sealed
    # Someone with the signing key rewrote event 17 and signed a new checkpoint,
    # but the checkpoint of size 25 had already been published.
    rewritten = log.copy()
    rewritten.events[16]["purpose"] = "MARKETING"
    resigned = rewritten.checkpoint(50)
    with_original_leaves = run(rewritten, [*checkpoints[:2], resigned], stored)
    assert (with_original_leaves.ok, with_original_leaves.first_bad_seq) == (False, 17)
    assert "inconsistent with the one of size 25" in (with_original_leaves.problem or "")
    with_rewritten_leaves = run(rewritten, [*checkpoints[:2], resigned], rewritten.leaves)
    assert (with_rewritten_leaves.ok, with_rewritten_leaves.first_bad_seq) == (False, 11)
    assert "inconsistent" in (with_rewritten_leaves.problem or "")


def test_two_signed_roots_for_one_size(sealed: tuple[Log, list[str], list[bytes]]) -> None:
    log, checkpoints, _ = sealed
    fork = log.copy()
    fork.events[40]["status"] = 500
    result = run(log, [*checkpoints, fork.checkpoint(50)])
    assert (result.ok, result.first_bad_seq) == (False, 26)
    assert "inconsistent" in (result.problem or "")


# --- ranges ------------------------------------------------------------------------------------


def test_a_range_needs_the_leaves_around_it(sealed: tuple[Log, list[str], list[bytes]]) -> None:
    log, checkpoints, stored = sealed
    assert run(log, checkpoints, stored, from_seq=20, to_seq=30) == VerifyResult(
        True, 11, None, None
    )
    assert run(log, checkpoints, from_seq=1, to_seq=25) == VerifyResult(True, 25, None, None)
    with pytest.raises(ValueError, match="stored_leaf_hashes"):
        run(log, checkpoints, from_seq=20, to_seq=30)
    with pytest.raises(ValueError, match="stored_leaf_hashes"):
        run(log, checkpoints, from_seq=1, to_seq=30)
    with pytest.raises(ValueError, match="to_seq is before"):
        run(log, checkpoints, from_seq=5, to_seq=4)


def test_a_range_finds_what_is_in_it(sealed: tuple[Log, list[str], list[bytes]]) -> None:
    log, checkpoints, stored = sealed
    tampered = log.copy()
    tampered.events[21]["status"] = 500  # seq 22
    assert run(tampered, checkpoints, stored, from_seq=20, to_seq=30).first_bad_seq == 22
    # Outside the range the events are not read (their stored leaves stand in).
    assert run(tampered, checkpoints, stored, from_seq=26, to_seq=50).ok
    # A range that runs past the sealed log.
    short = log.copy()
    del short.events[27:]
    result = run(short, checkpoints, stored, from_seq=20, to_seq=40)
    assert (result.ok, result.first_bad_seq) == (False, 28)


# --- property: any single tampering is pinned to its seq -------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 40),
    data=st.data(),
    kind=st.sampled_from(["alter", "delete", "duplicate", "swap", "insert"]),
)
def test_property_single_tampering_is_pinpointed(n: int, data: st.DataObject, kind: str) -> None:
    log = build(n)
    sizes = data.draw(st.sets(st.integers(1, n)), label="checkpoint sizes") | {n}
    checkpoints = [log.checkpoint(s) for s in sorted(sizes)]
    stored = log.leaves
    assert verify_log(log.stream(), checkpoints, [VKEY], stored_leaf_hashes=stored).ok

    i = data.draw(st.integers(0, n - 2), label="position")
    tampered = log.copy()
    if kind == "alter":
        tampered.events[i]["request_id"] = "req_forged"
        stream = tampered.stream()
    elif kind == "delete":
        del tampered.events[i]
        stream = tampered.stream()
    elif kind == "duplicate":
        tampered.events.insert(i + 1, copy.deepcopy(tampered.events[i]))
        stream = tampered.stream()
    elif kind == "swap":
        tampered.events[i], tampered.events[i + 1] = tampered.events[i + 1], tampered.events[i]
        stream = renumber(tampered).stream()
    else:
        tampered.events.insert(i, make_event(10_000))
        tampered.events.pop()
        stream = renumber(tampered).stream()
    result = verify_log(stream, checkpoints, [VKEY], stored_leaf_hashes=stored)
    assert not result.ok
    assert result.first_bad_seq == i + 1, (kind, i, result)
