"""Reading the audit trail: lists, one event with its proof, exports, checkpoints, proofs,
verification, the access log of a merchant and usage statistics.

Framework-free (the routes in ``audit.router`` are thin); raises
``service.problems.ProblemError`` to end a request with a problem.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from sqlalchemy.orm import Session, sessionmaker

from audit import repository as repo
from audit.documents import CSV_COLUMNS, csv_row, format_timestamp, json_line, public_event
from audit.merkle import EMPTY_ROOT, consistency_proof_from, inclusion_proof_from
from audit.note import format_checkpoint, sign_note, verifier_key
from audit.proofs import NodeCache, StoredLeaves, TreeReader
from audit.repository import EventFilters
from audit.sealer import log_origin
from audit.verify import VerifyResult, verify_log
from auth.keys import KeyStore
from service.ids import looks_like_id
from service.pagination import decode_int_cursor, encode_cursor
from service.problems import ProblemError

__all__ = [
    "AuditTrail",
    "EventFilters",
    "access_log",
    "consistency",
    "export_stream",
    "get_event",
    "holds_merchant",
    "latest_checkpoint",
    "list_events",
    "log_origin_in",
    "sealed_documents",
    "stats",
    "verifier_keys",
    "verify_database",
]

EXPORT_PAGE: Final = 1000
STATS_TIMEZONE: Final = "Asia/Shanghai"
ExportFormat = Literal["ndjson", "csv"]


@dataclass
class AuditTrail:
    """What the audit routes share in one process: where the log is and its proof cache."""

    session_factory: sessionmaker[Session]
    key_store: KeyStore
    default_origin: str
    nodes: NodeCache = field(default_factory=NodeCache)

    @classmethod
    def for_public_url(
        cls, session_factory: sessionmaker[Session], key_store: KeyStore, public_url: str
    ) -> AuditTrail:
        return cls(session_factory, key_store, log_origin(public_url))


def log_origin_in(session: Session, default: str) -> str:
    """The origin of the log in the database: that of its checkpoints, once there are any.

    A log keeps the origin it was created with even if the public URL changes
    later, so that its old checkpoints stay verifiable under the same key name.
    """
    head = repo.latest_checkpoint(session)
    if head is None:
        return default
    return head.note.split("\n", 1)[0] or default


def verifier_keys(key_store: KeyStore, origin: str, needed: Iterable[str] = ()) -> dict[str, str]:
    """``kid -> verifier key`` of every audit key ever used, named ``origin``.

    Reloads the key store once if a checkpoint names a key it does not know yet
    (rotated on another node less than a refresh interval ago).
    """
    public = key_store.view().audit_public
    if any(kid not in public for kid in needed):
        key_store.refresh()
        public = key_store.view().audit_public
    return {kid: verifier_key(origin, key) for kid, key in public.items()}


# ---- events -------------------------------------------------------------------------------


def list_events(
    session: Session, filters: EventFilters, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, object]], str | None]:
    before = decode_int_cursor(cursor)
    rows = repo.list_events(session, filters, limit=limit + 1, before_pk=before)
    page = rows[:limit]
    items = [public_event(row, row.seq) for row in page]
    more = len(rows) > limit and bool(page)
    return items, encode_cursor(page[-1].pk) if more else None


def get_event(session: Session, trail: AuditTrail, event_id: str) -> dict[str, object]:
    """One event, with an inclusion proof against the latest checkpoint once it is sealed."""
    row = repo.event_by_id(session, event_id) if looks_like_id(event_id, "evt") else None
    if row is None:
        raise ProblemError("not-found")
    event: dict[str, object] = public_event(row, row.seq)
    event["inclusion_proof"] = _inclusion_proof(session, trail, row.seq)
    return event


def _inclusion_proof(
    session: Session, trail: AuditTrail, seq: int | None
) -> dict[str, object] | None:
    if seq is None:
        return None
    head = repo.latest_checkpoint(session)
    if head is None or seq > head.size:
        return None
    reader = TreeReader(session, trail.nodes, head.size)
    try:
        path = inclusion_proof_from(seq - 1, head.size, reader.subtree)
        leaf = reader.subtree(seq - 1, seq)
    except LookupError:  # entries missing under a checkpoint: only tampering does that
        return None
    return {
        "leaf_index": seq - 1,
        "tree_size": head.size,
        "root_hash": head.root_hash,
        "leaf_hash": leaf.hex(),
        "hashes": [h.hex() for h in path],
        "signed_note": head.note,
    }


def export_stream(
    trail: AuditTrail,
    filters: EventFilters,
    fmt: ExportFormat,
    *,
    oldest_first: bool = False,
    page_size: int = EXPORT_PAGE,
    byte_order_mark: bool = False,
) -> Iterator[bytes]:
    """The matching events as NDJSON lines or CSV rows, read page by page.

    Each page is read in its own short session, so a long download holds no
    transaction open and memory does not grow with the number of events.
    The CSV starts with a header row, after a UTF-8 byte order mark if asked
    (spreadsheet programs need it to read Chinese text; CSV readers take it as
    part of the first column's name).
    """
    if fmt == "csv":
        mark = "\ufeff".encode() if byte_order_mark else b""
        yield mark + _csv_lines([list(CSV_COLUMNS)])
    last: int | None = None
    while True:
        with trail.session_factory() as session:
            rows = repo.list_events(
                session,
                filters,
                limit=page_size,
                before_pk=None if oldest_first else last,
                after_pk=last if oldest_first else None,
                oldest_first=oldest_first,
            )
        if not rows:
            return
        events = [public_event(row, row.seq) for row in rows]
        if fmt == "csv":
            yield _csv_lines([csv_row(e) for e in events])
        else:
            yield b"".join(json_line(e) for e in events)
        if len(rows) < page_size:
            return
        last = rows[-1].pk


def _csv_lines(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


# ---- checkpoints and proofs ---------------------------------------------------------------


def latest_checkpoint(session: Session, trail: AuditTrail) -> dict[str, object]:
    """The newest signed tree head; for an empty log, a freshly signed head of size 0."""
    origin = log_origin_in(session, trail.default_origin)
    head = repo.latest_checkpoint(session)
    if head is None:
        signer = trail.key_store.view().audit_signer
        if signer is None:
            raise ProblemError("service-unavailable")
        kid, private_key = signer
        note = sign_note(format_checkpoint(origin, 0, EMPTY_ROOT), origin, private_key)
        size, root, key_id, created_at = 0, EMPTY_ROOT.hex(), kid, None
    else:
        note, size, root, key_id = head.note, head.size, head.root_hash, head.key_id
        created_at = head.created_at
    keys = verifier_keys(trail.key_store, origin, [key_id])
    return {
        "size": size,
        "root_hash": root,
        "signed_note": note,
        "origin": origin,
        "verifier_key": keys.get(key_id),
        "verifier_keys": list(keys.values()),
        "key_id": key_id,
        "created_at": created_at,
    }


def consistency(
    session: Session, trail: AuditTrail, first: int, second: int | None
) -> dict[str, object]:
    """RFC 9162 consistency proof between the trees of the first ``first`` and ``second`` events.

    ``second`` defaults to the latest checkpoint's size, and may not exceed it.
    """
    head = repo.latest_checkpoint(session)
    latest = head.size if head is not None else 0
    to = latest if second is None else second
    if to > latest:
        raise ProblemError(
            "validation-failed", errors=[("to", "Larger than the latest checkpoint's size")]
        )
    if first > to:
        raise ProblemError("validation-failed", errors=[("from", "Larger than `to`")])
    reader = TreeReader(session, trail.nodes, to)
    try:
        hashes = consistency_proof_from(first, to, reader.subtree)
        from_root, to_root = reader.subtree(0, first), reader.subtree(0, to)
    except LookupError:
        raise ProblemError("service-unavailable") from None
    return {
        "from": first,
        "to": to,
        "hashes": [h.hex() for h in hashes],
        "from_root": from_root.hex(),
        "to_root": to_root.hex(),
    }


def verify_database(
    session: Session,
    key_store: KeyStore,
    default_origin: str,
    from_seq: int | None = None,
    to_seq: int | None = None,
) -> VerifyResult:
    """Recompute every leaf and root of the log in the database and check every checkpoint.

    The same ``audit.verify.verify_log`` as the offline verifier; the stored
    leaf hashes only help pin an altered event to its seq. Events are read in
    chunks, so memory stays flat whatever the size of the log.
    """
    if from_seq is not None and to_seq is not None and to_seq < from_seq:
        raise ProblemError("validation-failed", errors=[("to_seq", "Before from_seq")])
    origin = log_origin_in(session, default_origin)
    heads = repo.checkpoints(session)
    keys = verifier_keys(key_store, origin, {h.key_id for h in heads})
    stored_size = repo.log_size(session)
    max_size = max([stored_size, *(h.size for h in heads)])
    last = max_size if to_seq is None else min(to_seq, max_size)
    first = from_seq or 1

    return verify_log(
        sealed_documents(session, first, last),
        [{"signed_note": h.note} for h in heads],
        list(keys.values()),
        from_seq,
        to_seq,
        stored_leaf_hashes=StoredLeaves(session, max_size),
        origin=origin,
    )


def sealed_documents(
    session: Session, first: int, last: int, *, chunk: int = 5000
) -> Iterator[tuple[int, dict[str, object]]]:
    """``(seq, public event)`` for the sealed events ``first..last`` in seq order, in chunks.

    A row whose stored values cannot even be read back (e.g. ``details`` that is
    not JSON any more, possible on SQLite, whose columns do not enforce their
    types) still yields its seq, with a placeholder document that cannot hash to
    the sealed leaf: verification then reports that seq instead of crashing.
    """
    start = first
    while start <= last:
        stop = min(last, start + chunk - 1)
        try:
            items = [
                (r.seq, public_event(r, r.seq)) for r in repo.sealed_events(session, start, stop)
            ]
        except _UNREADABLE:
            items = list(_one_by_one(session, start, stop))
        yield from items
        start = stop + 1


_UNREADABLE = (ValueError, TypeError, KeyError, AttributeError, OverflowError)


def _one_by_one(session: Session, first: int, last: int) -> Iterator[tuple[int, dict[str, object]]]:
    for seq in range(first, last + 1):
        try:
            events = [
                (row.seq, public_event(row, row.seq))
                for row in repo.sealed_events(session, seq, seq)
            ]
        except _UNREADABLE as exc:
            yield (
                seq,
                {
                    "seq": seq,
                    "unreadable": f"the stored event cannot be read: {type(exc).__name__}",
                },
            )
            continue
        yield from events


# ---- access log and statistics ------------------------------------------------------------


def holds_merchant(session: Session, uscc: str) -> bool:
    """Whether the registry holds ``uscc`` (see ``repository.holds_merchant``)."""
    return repo.holds_merchant(session, uscc)


def access_log(
    session: Session,
    uscc: str,
    *,
    limit: int,
    cursor: str | None,
    since: datetime | None,
    until: datetime | None,
) -> tuple[list[dict[str, object]], str | None]:
    """Who checked this merchant, when and why (credit check events), newest first."""
    before = decode_int_cursor(cursor)
    rows = repo.access_log(
        session, uscc, limit=limit + 1, before_pk=before, since=since, until=until
    )
    page = rows[:limit]
    items = [_access_entry(row) for row in page]
    more = len(rows) > limit and bool(page)
    return items, encode_cursor(page[-1].pk) if more else None


def _access_entry(row: Any) -> dict[str, object]:
    details = row.details if isinstance(row.details, Mapping) else {}
    verdict = details.get("verdict")
    return {
        "event_id": row.id,
        "seq": row.seq,
        "occurred_at": format_timestamp(row.occurred_at),
        "client_id": row.actor_client_id,
        "client_name": row.actor_name,
        "action": row.action,
        "purpose": row.purpose,
        "outcome": row.outcome,
        "status": row.status,
        "verdict": verdict if isinstance(verdict, str) else None,
        "check_id": row.target_id if row.target_type == "credit_check" else None,
        "request_id": row.request_id,
    }


def stats(
    session: Session,
    *,
    since: datetime | None,
    until: datetime | None,
    client_id: str | None,
) -> dict[str, object]:
    """Credit checks per client, per day (Asia/Shanghai) and per verdict, and all three at once."""
    rows = repo.check_stats(session, since=since, until=until, client_id=client_id)
    per_client: Counter[str | None] = Counter()
    per_day: Counter[str] = Counter()
    per_verdict: Counter[str | None] = Counter()
    table = []
    for client, day, verdict, count in rows:
        per_client[client] += count
        per_day[str(day)] += count
        per_verdict[verdict] += count
        table.append({"client_id": client, "date": str(day), "verdict": verdict, "checks": count})
    table.sort(key=lambda r: (r["date"], r["client_id"] or "", r["verdict"] or ""))
    return {
        "since": since,
        "until": until,
        "timezone": STATS_TIMEZONE,
        "total": sum(per_client.values()),
        "per_client": [
            {"client_id": c, "checks": n}
            for c, n in sorted(per_client.items(), key=lambda kv: (-kv[1], kv[0] or ""))
        ],
        "per_day": [{"date": d, "checks": n} for d, n in sorted(per_day.items())],
        "per_verdict": [
            {"verdict": v, "checks": n}
            for v, n in sorted(per_verdict.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
        ],
        "rows": table,
    }
