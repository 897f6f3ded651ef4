"""Offline verification of a sealed audit log against its signed checkpoints.

Nothing read from the database is trusted except through a signature: the
verifier recomputes every leaf from the event itself (``event_leaf_hash``),
rebuilds the Merkle roots incrementally, and compares them with the roots of
the checkpoints whose Ed25519 signatures verify under the given keys. It needs
no database and no network, so ``creditshare audit verify --bundle`` and
``POST /v1/audit/verify`` run the same code.

What it detects, and which ``first_bad_seq`` it reports
--------------------------------------------------------
* a forged or corrupted checkpoint (bad signature, unknown key, wrong origin):
  the first seq it claims to seal beyond the previous valid checkpoint;
* a deleted event or a gap: the first missing seq; events missing at the end
  (the checkpoint seals more than is present): the first missing seq;
* a duplicated seq or events out of order: where the order breaks;
* an event beyond the latest checkpoint (inserted, or sealed without a
  checkpoint): its seq;
* an altered, replaced, inserted-and-renumbered or reordered event: the leaves
  no longer reproduce a signed root. See "Locating the bad event" below;
* inconsistent checkpoints: when the events reproduce a later checkpoint but
  not an earlier one, the later one was signed over a rewritten history; the
  problem says so (the seq is located as for an altered event).

Locating the bad event
----------------------
Signed roots only say *that* the first ``size`` leaves differ, not *where*. The
earliest checkpoint whose root the recomputed leaves fail to reproduce bounds
the damage to ``(P, size]``, ``P`` being the largest smaller checkpoint that
does match. To go further the caller may pass ``stored_leaf_hashes`` (the leaf
hashes the sealer stored, e.g. in the database). They are untrusted, but if
they reproduce the signed root of that checkpoint they *are* the sealed leaves
(collision resistance of SHA-256), and the first index where a recomputed leaf
differs from its stored leaf is exactly the bad event: the usual case, where
an event row was edited but its stored leaf hash was not. If the stored leaves
do not reproduce the root either (they were rewritten too, or none are given),
the result is the start of the range, ``P + 1``, and the message gives the
range; signing checkpoints more often makes that range smaller.

The verifier is as strong as the checkpoints it is given: a truncated log whose
later checkpoints were deleted as well looks complete. Keep the latest signed
checkpoint somewhere the database's administrators cannot rewrite (a witness,
a published copy) and pass it in.

Cost
----
One canonical encoding and one SHA-256 per event plus about one more SHA-256
per event for the incremental root (``CompactRange``); events are streamed and
not kept, memory is O(log n) besides ``stored_leaf_hashes``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from audit.canonical import event_leaf_hash
from audit.merkle import EMPTY_ROOT, CompactRange, subtree_root
from audit.note import Checkpoint, NoteError, open_note

__all__ = ["CheckpointSource", "SignedCheckpoint", "VerifyResult", "verify_log"]


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of ``verify_log``; the shape of ``POST /v1/audit/verify``'s response.

    ``checked`` counts the events in the range whose leaves were recomputed;
    when ``ok`` every one of them is proven by a signed checkpoint.
    """

    ok: bool
    checked: int
    first_bad_seq: int | None
    problem: str | None


class SignedCheckpoint(Protocol):
    """Anything carrying a signed checkpoint note (e.g. a stored checkpoint row)."""

    @property
    def signed_note(self) -> str: ...


CheckpointSource = str | bytes | Mapping[str, object] | SignedCheckpoint
"""A signed note itself, a mapping with a ``signed_note`` key, or an object with that attribute."""


def _note_of(item: CheckpointSource) -> str | bytes | None:
    if isinstance(item, str | bytes):
        return item
    if isinstance(item, Mapping):
        value = item.get("signed_note")
    else:
        value = getattr(item, "signed_note", None)
    return value if isinstance(value, str | bytes) else None


def _claimed_size(note: str | bytes) -> int | None:
    """The size line of a note that did not verify: only to say what it pretended to seal."""
    text = note.decode("utf-8", "replace") if isinstance(note, bytes) else note
    lines = text.split("\n", 2)
    if len(lines) >= 2 and lines[1].isascii() and lines[1].isdigit():
        return int(lines[1])
    return None


def _open_checkpoints(
    checkpoints: Sequence[CheckpointSource],
    verifier_keys: Sequence[str],
    origin: str | None,
    problems: list[tuple[int | None, str]],
) -> list[Checkpoint]:
    """The checkpoints whose signatures verify, by size; the others become problems."""
    heads: list[Checkpoint] = []
    rejected: list[tuple[int | None, str]] = []
    for position, item in enumerate(checkpoints):
        note = _note_of(item)
        if note is None:
            rejected.append((None, f"checkpoint #{position} carries no signed note"))
            continue
        try:
            heads.append(open_note(note, verifier_keys, origin=origin))
        except NoteError as exc:
            claimed = _claimed_size(note)
            what = f"of size {claimed}" if claimed is not None else "of unknown size"
            rejected.append((claimed, f"checkpoint #{position} {what} is not authentic: {exc}"))
    heads.sort(key=lambda h: h.size)
    sizes = [h.size for h in heads]
    for claimed, message in rejected:
        seq = None
        if claimed:  # the first event it claims to seal beyond what authentic ones seal
            seq = 1 + max((s for s in sizes if s < claimed), default=0)
        problems.append((seq, message))
    for head in heads:
        if head.size == 0 and head.root != EMPTY_ROOT:
            problems.append((None, "a signed checkpoint of size 0 has a non-empty root"))
    return heads


def verify_log(
    events: Iterable[tuple[int, Mapping[str, object]]],
    checkpoints: Sequence[CheckpointSource],
    verifier_keys: Sequence[str],
    from_seq: int | None = None,
    to_seq: int | None = None,
    *,
    stored_leaf_hashes: Sequence[bytes] | None = None,
    origin: str | None = None,
) -> VerifyResult:
    """Verify sealed events against signed checkpoints (see the module docstring).

    ``events`` yields ``(seq, event)`` in seq order, seq starting at 1 with no
    gaps; events outside ``[from_seq, to_seq]`` are skipped. ``checkpoints``
    are signed notes (or carry one), in any order. ``verifier_keys`` are the
    log's verifier key strings; ``origin``, if given, must be every
    checkpoint's origin.

    ``stored_leaf_hashes[i]`` is the stored leaf hash of seq ``i + 1``. Besides
    locating an altered event, it provides the leaves outside the range, which
    the roots need: it is required when ``from_seq > 1`` and when ``to_seq``
    falls short of a checkpoint size (``ValueError`` otherwise).

    When several problems are found, the one with the smallest seq is reported.
    """
    first = 1 if from_seq is None else from_seq
    if first < 1:
        raise ValueError("from_seq starts at 1")
    if to_seq is not None and to_seq < first:
        raise ValueError("to_seq is before from_seq")
    stored = stored_leaf_hashes
    problems: list[tuple[int | None, str]] = []

    heads = _open_checkpoints(checkpoints, verifier_keys, origin, problems)
    max_size = heads[-1].size if heads else 0
    relevant = [h for h in heads if h.size >= first and h.size > 0]
    if to_seq is None:
        end = max_size
    else:
        end = next((h.size for h in relevant if h.size >= to_seq), max_size)
    if relevant:
        needed = max(first - 1, end if to_seq is not None and end > to_seq else 0)
        if needed and (stored is None or len(stored) < needed):
            raise ValueError(
                f"stored_leaf_hashes must hold the first {needed} leaves: the signed roots "
                "cover leaves outside the requested range"
            )

    rng = CompactRange()
    results: list[tuple[Checkpoint, bool]] = []
    ci = 0
    next_size = relevant[0].size if relevant else -1

    def check_due() -> int:
        """Compare every checkpoint of the current size; return the next size to stop at."""
        nonlocal ci
        while ci < len(relevant) and relevant[ci].size == rng.size:
            results.append((relevant[ci], rng.root() == relevant[ci].root))
            ci += 1
        return relevant[ci].size if ci < len(relevant) else -1

    def append_stored(start: int, stop: int) -> bool:
        """Append stored leaves ``[start, stop)``; a malformed one is a problem."""
        nonlocal next_size
        assert stored is not None
        for i in range(start, stop):
            try:
                rng.append(stored[i])
            except (ValueError, TypeError):
                problems.append((i + 1, f"stored leaf hash of seq {i + 1} is malformed"))
                return False
            if rng.size == next_size:
                next_size = check_due()
        return True

    prefix_ok = True
    if relevant and first > 1:
        prefix_ok = append_stored(0, first - 1)

    checked = 0
    expected = first
    first_diff: int | None = None  # first leaf index where recomputed != stored
    broke = not prefix_ok
    for seq, event in events if prefix_ok else ():
        if seq < first and expected == first:
            continue
        if to_seq is not None and seq > to_seq:
            break
        if seq != expected:
            if seq > expected:
                problems.append(
                    (
                        expected,
                        f"event seq {expected} is missing (the next one is seq {seq}): "
                        "deleted, or events out of order",
                    )
                )
            else:
                problems.append(
                    (
                        seq,
                        f"event seq {seq} comes again after seq {expected - 1}: "
                        "a duplicate (inserted) event, or events out of order",
                    )
                )
            broke = True
            break
        if seq > max_size:
            problems.append(
                (
                    seq,
                    f"event seq {seq} is not sealed by any authentic checkpoint "
                    f"(they cover {max_size} events): inserted, or sealed without a checkpoint",
                )
            )
            broke = True
            break
        own = event.get("seq")
        if own is not None and own != seq:
            problems.append((seq, f"the event at seq {seq} says its seq is {own!r}"))
            broke = True
            break
        try:
            leaf = event_leaf_hash(event)
        except (TypeError, ValueError) as exc:
            problems.append((seq, f"event seq {seq} has no canonical encoding: {exc}"))
            broke = True
            break
        if (
            stored is not None
            and first_diff is None
            and (seq > len(stored) or stored[seq - 1] != leaf)
        ):
            first_diff = seq - 1
        rng.append(leaf)
        checked += 1
        expected = seq + 1
        if seq == next_size:
            next_size = check_due()

    if not broke:
        last = expected - 1
        target = max_size if to_seq is None else min(to_seq, max_size)
        if last < target:
            problems.append(
                (
                    last + 1,
                    f"events {last + 1}..{target} are missing: an authentic checkpoint seals "
                    f"{max_size} events",
                )
            )
        elif to_seq is not None and end > to_seq:
            append_stored(to_seq, end)

    _locate_mismatch(results, stored, first_diff, problems)

    if not problems:
        return VerifyResult(ok=True, checked=checked, first_bad_seq=None, problem=None)
    worst, message = min(problems, key=lambda p: (p[0] is None, p[0] or 0))
    return VerifyResult(ok=False, checked=checked, first_bad_seq=worst, problem=message)


def _locate_mismatch(
    results: list[tuple[Checkpoint, bool]],
    stored: Sequence[bytes] | None,
    first_diff: int | None,
    problems: list[tuple[int | None, str]],
) -> None:
    """Turn the earliest root mismatch into a problem with the best seq we can prove."""
    bad = next((head for head, ok in results if not ok), None)
    if bad is None:
        return
    good_before = max((h.size for h, ok in results if ok and h.size < bad.size), default=0)
    if (
        stored is not None
        and first_diff is not None
        and first_diff < bad.size <= len(stored)
        and subtree_root(stored, 0, bad.size) == bad.root
    ):
        seq = first_diff + 1
        message = (
            f"event seq {seq} is not the event that was sealed (altered, replaced or moved): "
            f"its leaf hash differs from the stored one, and the stored leaves reproduce "
            f"the signed root of size {bad.size}"
        )
    else:
        seq = good_before + 1
        message = (
            f"events {seq}..{bad.size} do not reproduce the signed root of size {bad.size}: "
            "one of them was altered, inserted, deleted or moved (or that checkpoint was "
            "signed over other events); no trustworthy stored leaf hashes narrow it further"
        )
    later = next((h for h, ok in results if ok and h.size >= bad.size), None)
    if later is not None:
        message += (
            f"; the signed checkpoint of size {later.size} matches the events but is "
            f"inconsistent with the one of size {bad.size}: the log was rewritten after "
            "that one was signed"
        )
    problems.append((seq, message))
