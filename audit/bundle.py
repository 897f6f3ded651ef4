"""The offline audit bundle: what ``creditshare audit export --out DIR`` writes and
``creditshare audit verify --bundle DIR`` checks, with no database and no network.

A bundle is a directory of plain files::

    manifest.json        {"format", "origin", "size", "events", "checkpoints", "exported_at"}
    events.ndjson        one sealed event per line, exactly as the API shows it
                         (with "seq"), in seq order 1..size
    checkpoints.ndjson   {"size", "root_hash", "signed_note", "key_id", "created_at"} per line
    keys.json            {"origin", "verifier_keys": {key id: verifier key}}
    leaves.bin           the leaf hashes the sealer stored, 32 bytes per event in seq order

Verification trusts none of it except through signatures: every leaf is
recomputed from ``events.ndjson`` and every root from the leaves, and each root
must match a checkpoint whose Ed25519 signature verifies. ``leaves.bin`` only
helps pin an altered event to its seq. The keys in ``keys.json`` travel with
the data, so a careful verifier passes the verifier keys it obtained
independently (``--trusted-key``) and the newest checkpoint it knows of
(``--checkpoint``), so that a bundle cut short together with its checkpoints
is noticed.

Reading a bundle needs only this module, ``audit.verify`` and its pure
dependencies; writing one imports the database layer lazily.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from audit.merkle import HASH_SIZE, LeafSequence
from audit.verify import VerifyResult, verify_log

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from auth.keys import KeyStore

__all__ = ["BUNDLE_FORMAT", "BundleError", "BundleSummary", "verify_bundle", "write_bundle"]

BUNDLE_FORMAT: Final = "creditshare-audit-bundle/1"
MANIFEST, EVENTS, CHECKPOINTS, KEYS, LEAVES = (
    "manifest.json",
    "events.ndjson",
    "checkpoints.ndjson",
    "keys.json",
    "leaves.bin",
)
_CHUNK: Final = 5000


class BundleError(ValueError):
    """The directory is not a readable bundle (a missing file, a malformed manifest or key)."""


@dataclass(frozen=True, slots=True)
class BundleSummary:
    origin: str
    size: int
    events: int
    checkpoints: int


# ---- writing ------------------------------------------------------------------------------


def write_bundle(
    session: Session, key_store: KeyStore, default_origin: str, out: Path
) -> BundleSummary:
    """Export the sealed log (up to its latest checkpoint) into the empty directory ``out``."""
    from audit import repository as repo
    from audit.documents import json_line
    from audit.queries import log_origin_in, sealed_documents, verifier_keys

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BundleError(f"{out} exists and is not an empty directory")
    out.mkdir(parents=True, exist_ok=True)
    origin = log_origin_in(session, default_origin)
    head = repo.latest_checkpoint(session)
    size = head.size if head is not None else 0
    heads = repo.checkpoints(session, up_to_size=size)
    keys = verifier_keys(key_store, origin, {h.key_id for h in heads})

    with (out / CHECKPOINTS).open("wb") as handle:
        for h in heads:
            line = {
                "size": h.size,
                "root_hash": h.root_hash,
                "signed_note": h.note,
                "key_id": h.key_id,
                "created_at": h.created_at.isoformat(),
            }
            handle.write(json_line(line))

    written = 0
    with (out / EVENTS).open("wb") as events, (out / LEAVES).open("wb") as leaves:
        for start in range(0, size, _CHUNK):
            end = min(size, start + _CHUNK)
            for _seq, event in sealed_documents(session, start + 1, end):
                events.write(json_line(event))
                written += 1
            leaves.write(
                b"".join(h or bytes(HASH_SIZE) for h in repo.leaf_hashes(session, start, end))
            )

    (out / KEYS).write_text(
        json.dumps({"origin": origin, "verifier_keys": keys}, indent=2, ensure_ascii=False) + "\n"
    )
    manifest = {
        "format": BUNDLE_FORMAT,
        "origin": origin,
        "size": size,
        "events": written,
        "checkpoints": len(heads),
        "exported_at": datetime.now(UTC).isoformat(),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return BundleSummary(origin=origin, size=size, events=written, checkpoints=len(heads))


# ---- reading and verifying ----------------------------------------------------------------


class _BlobLeaves(LeafSequence):
    """Leaf hashes stored back to back (``leaves.bin``) as a sequence, without copying."""

    def __init__(self, blob: bytes) -> None:
        self._blob = memoryview(blob)
        self._n = len(blob) // HASH_SIZE

    def __len__(self) -> int:
        return self._n

    def _leaf(self, index: int) -> bytes:
        start = index * HASH_SIZE
        return bytes(self._blob[start : start + HASH_SIZE])


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"the bundle has no {path.name}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path.name} is not valid JSON: {exc}") from None


def _bundle_keys(directory: Path) -> tuple[str, list[str]]:
    data = _read_json(directory / KEYS)
    if not isinstance(data, Mapping):
        raise BundleError(f"{KEYS} is not a JSON object")
    origin, keys = data.get("origin"), data.get("verifier_keys")
    if not isinstance(origin, str) or not isinstance(keys, Mapping):
        raise BundleError(f"{KEYS} needs an origin and verifier_keys")
    return origin, [str(k) for k in keys.values()]


def _bundle_checkpoints(directory: Path) -> list[str | Mapping[str, object]]:
    try:
        lines = (directory / CHECKPOINTS).read_bytes().splitlines()
    except FileNotFoundError:
        raise BundleError(f"the bundle has no {CHECKPOINTS}") from None
    notes: list[str | Mapping[str, object]] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError:
            item = {}  # counted, and reported as a checkpoint without a signed note
        notes.append(item if isinstance(item, Mapping) else {})
    return notes


_LONG_NUMBER: Final = re.compile(rb"[:,\[]\s*-?\d{19}")


def _parse(line: bytes) -> object:
    """One JSON line, exactly: orjson turns integers beyond 64 bits into floats (which no
    event holds), so a line with a number of 19 digits or more is read by the stdlib
    instead (a string holding ``:`` and such digits costs the slower path, nothing more)."""
    try:
        if _LONG_NUMBER.search(line):
            return json.loads(line)
        return orjson.loads(line)
    except (ValueError, RecursionError):  # decode errors; the stdlib's nesting limit
        return None


class _EventReader:
    """Streams ``(seq, event)`` from ``events.ndjson``; a line that is not an event ends the
    stream and is remembered, so the verifier's verdict can name its seq."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bad_seq: int | None = None
        self.bad_problem: str | None = None

    def __iter__(self) -> Iterator[tuple[int, Mapping[str, object]]]:
        previous = 0
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            raise BundleError(f"the bundle has no {EVENTS}") from None
        with handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                event = _parse(line)
                seq = event.get("seq") if isinstance(event, dict) else None
                if not isinstance(event, dict) or type(seq) is not int:
                    self.bad_seq = previous + 1
                    self.bad_problem = (
                        f"{EVENTS} line {number} (after seq {previous}) is not an event with a seq"
                    )
                    return
                previous = seq
                yield seq, event


def verify_bundle(
    directory: Path,
    *,
    trusted_keys: Sequence[str] | None = None,
    extra_checkpoints: Sequence[str] = (),
    from_seq: int | None = None,
    to_seq: int | None = None,
) -> VerifyResult:
    """Verify a bundle offline (see the module doc). Raises ``BundleError`` if it is unreadable.

    ``trusted_keys`` replace the bundle's own verifier keys; ``extra_checkpoints``
    are signed notes obtained elsewhere (e.g. the latest one published), checked
    together with the bundle's.
    """
    manifest = _read_json(directory / MANIFEST)
    if not isinstance(manifest, Mapping) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{MANIFEST} is not a {BUNDLE_FORMAT} manifest")
    origin, bundle_keys = _bundle_keys(directory)
    keys = list(trusted_keys) if trusted_keys else bundle_keys
    checkpoints = _bundle_checkpoints(directory) + list(extra_checkpoints)
    try:
        stored: Sequence[bytes] | None = _BlobLeaves((directory / LEAVES).read_bytes())
    except FileNotFoundError:
        stored = None
    reader = _EventReader(directory / EVENTS)
    try:
        result = verify_log(
            reader,
            checkpoints,
            keys,
            from_seq,
            to_seq,
            stored_leaf_hashes=stored,
            origin=origin,
        )
    except ValueError as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(str(exc)) from None
    if reader.bad_seq is not None and (
        result.first_bad_seq is None or reader.bad_seq <= result.first_bad_seq
    ):
        return VerifyResult(
            ok=False,
            checked=result.checked,
            first_bad_seq=reader.bad_seq,
            problem=reader.bad_problem,
        )
    return result
