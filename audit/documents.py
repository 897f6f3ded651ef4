"""The public JSON document of an audit event: one definition for hashing, the API and exports.

``event_document(row)`` is the event exactly as the API shows it, minus ``seq``;
its canonical encoding (``audit.canonical``) is the Merkle leaf of the event. The
same function feeds the sealer, ``GET /v1/audit/events``, the exports and the
offline bundle, so an event taken from any of them re-hashes to its sealed leaf.

**This function is part of the log format.** Events already sealed must keep
re-hashing to their leaves, so a change here (a field renamed, a value formatted
differently) breaks every existing log. Add fields only through new columns that
are ``null`` for old events *and* leave ``null`` out -- or better, not at all.

Values are normalised so every event has a canonical encoding:

* ``occurred_at`` is RFC 3339 in UTC with exactly six fractional digits and
  ``Z`` (``2026-05-01T08:30:00.000000Z``), so the text does not depend on the
  database's or the JSON library's choices;
* a float inside ``details`` (the canonical encoding refuses floats) becomes its
  shortest round-trip decimal text (``2.5`` -> ``"2.5"``);
* a string holding an unpaired surrogate (not valid Unicode) has it replaced by
  U+FFFD, and a non-string key is turned into a string.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson

__all__ = [
    "CSV_COLUMNS",
    "csv_cell",
    "csv_row",
    "document_from_csv_row",
    "event_document",
    "format_timestamp",
    "json_line",
    "public_event",
]

_MAX_DEPTH: Final = 32


def format_timestamp(value: datetime) -> str:
    """RFC 3339, UTC, microseconds, ``Z``: the one textual form of an event time."""
    if value.tzinfo is None:
        raise ValueError("audit timestamps are timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _clean_str(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in value)
    return value


def _dumps(value: object, *, sort_keys: bool) -> bytes:
    """Compact UTF-8 JSON, exact for any integer (beyond 64 bits the stdlib takes over)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else None)
    except orjson.JSONEncodeError:
        text = json.dumps(value, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8")


def _json_text(value: object) -> str:
    """Compact JSON with sorted keys."""
    return _dumps(value, sort_keys=True).decode("utf-8")


def json_line(value: object) -> bytes:
    """One NDJSON line (compact UTF-8 JSON and a newline), exact for any integer."""
    return _dumps(value, sort_keys=False) + b"\n"


def _clean(value: object, depth: int = 0) -> object:
    """``value`` if the canonical encoding accepts it as is, else a copy that it accepts.

    Like ``audit.canonical``, the common case (plain JSON without floats) is
    returned without copying: the sealer runs this for every event.
    """
    t = type(value)
    if t is str:
        assert isinstance(value, str)
        return _clean_str(value)
    if t is int or t is bool or value is None:
        return value
    if t is float:
        assert isinstance(value, float)
        return repr(value) if math.isfinite(value) else str(value)
    if depth >= _MAX_DEPTH:  # deeper than anything we write: keep it, as text
        return _clean_str(json.dumps(value, default=str, ensure_ascii=False))
    if t is dict:
        assert isinstance(value, dict)
        for key, item in value.items():
            if type(key) is not str or _clean(item, depth + 1) is not item:
                return {_clean_str(str(k)): _clean(v, depth + 1) for k, v in value.items()}
        return value
    if t is list:
        assert isinstance(value, list)
        for item in value:
            if _clean(item, depth + 1) is not item:
                return [_clean(v, depth + 1) for v in value]
        return value
    if isinstance(value, Mapping):
        return {_clean_str(str(k)): _clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v, depth + 1) for v in value]
    if isinstance(value, int):  # an int subclass such as IntEnum: its number
        return int(value)
    if isinstance(value, str):  # a str subclass such as StrEnum: its text
        return _clean_str(str.__str__(value))
    return _clean_str(str(value))


def event_document(row: Any) -> dict[str, object]:
    """The event as published, without ``seq`` (the input of its leaf hash).

    ``row`` is an ``AuditEvent`` or a result row with the same column names.
    """
    details = row.details
    return {
        "id": row.id,
        "occurred_at": format_timestamp(row.occurred_at),
        "actor": {
            "client_id": row.actor_client_id,
            "name": row.actor_name,
            "kind": row.actor_kind,
        },
        "action": row.action,
        "target": {"type": row.target_type, "id": row.target_id},
        "uscc": row.uscc,
        "purpose": row.purpose,
        "outcome": row.outcome,
        "status": row.status,
        "request_id": row.request_id,
        "ip": row.ip,
        "details": _clean(details) if details is not None else {},
    }


def public_event(row: Any, seq: int | None) -> dict[str, object]:
    """``event_document`` with ``seq`` (null until sealed) after the id, as the API lists it."""
    document = event_document(row)
    out: dict[str, object] = {"id": document.pop("id"), "seq": seq}
    out.update(document)
    return out


# ---- CSV -----------------------------------------------------------------------------------

CSV_COLUMNS: Final = (
    "id",
    "seq",
    "occurred_at",
    "actor_client_id",
    "actor_name",
    "actor_kind",
    "action",
    "target_type",
    "target_id",
    "uscc",
    "purpose",
    "outcome",
    "status",
    "request_id",
    "ip",
    "details",
)
"""Flattened columns of the CSV export; ``details`` is its canonical JSON text."""

# A spreadsheet evaluates a cell that starts with one of these as a formula
# (OWASP "CSV injection"). Such cells get a leading apostrophe; so does a cell
# that already starts with one, which keeps the escaping reversible.
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r", "\n", "'")


def csv_cell(value: object) -> str:
    """One CSV cell: empty for null, digits for integers, escaped text otherwise."""
    if value is None:
        return ""
    if value == "":
        return "'"  # a lone apostrophe: the empty string, as opposed to null
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def csv_row(event: Mapping[str, Any]) -> list[str]:
    """A public event (with ``seq``) as the cells of ``CSV_COLUMNS``."""
    actor = event["actor"]
    target = event["target"]
    details = _json_text(event["details"])
    values: list[object] = [
        event["id"],
        event["seq"],
        event["occurred_at"],
        actor["client_id"],
        actor["name"],
        actor["kind"],
        event["action"],
        target["type"],
        target["id"],
        event["uscc"],
        event["purpose"],
        event["outcome"],
        event["status"],
        event["request_id"],
        event["ip"],
        details,
    ]
    return [csv_cell(v) for v in values]


def _uncell(text: str) -> str | None:
    if text == "":
        return None
    if text.startswith("'"):  # the guard (a lone one stands for the empty string)
        return text[1:]
    return text


def document_from_csv_row(cells: Mapping[str, str]) -> dict[str, object]:
    """Rebuild the public event from a CSV export row (by header name), e.g. to re-hash it.

    The reverse of ``csv_row``: an empty cell is ``null``, a lone apostrophe the
    empty string, and the apostrophe that guards a formula-like cell is removed.
    """

    def text(name: str) -> str | None:
        return _uncell(cells[name])

    def number(name: str) -> int | None:
        value = text(name)
        return None if value is None else int(value)

    details_text = text("details")
    return {
        "id": text("id"),
        "seq": number("seq"),
        "occurred_at": text("occurred_at"),
        "actor": {
            "client_id": text("actor_client_id"),
            "name": text("actor_name"),
            "kind": text("actor_kind"),
        },
        "action": text("action"),
        "target": {"type": text("target_type"), "id": text("target_id")},
        "uscc": text("uscc"),
        "purpose": text("purpose"),
        "outcome": text("outcome"),
        "status": number("status"),
        "request_id": text("request_id"),
        "ip": text("ip"),
        "details": json.loads(details_text) if details_text else {},  # exact big integers
    }
