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
from itertools import islice
from typing import Any, Final

import orjson

from audit.canonical import event_leaf_hash, plain_leaf_hash

__all__ = [
    "CSV_COLUMNS",
    "csv_cell",
    "csv_row",
    "document_from_csv_row",
    "event_document",
    "format_timestamp",
    "json_line",
    "public_event",
    "stored_event_document",
    "stored_event_leaf_hash",
    "utc_text",
]

_MAX_DEPTH: Final = 32
_SCALARS: Final = frozenset({str, int, bool, type(None)})
"""Types the canonical encoding takes as they are (``type()``: no subclasses)."""


_STRFTIME: Final = "%Y-%m-%dT%H:%M:%S.%fZ"
"""The definition of the textual form (what ``utc_text`` reproduces faster)."""
_FIELDS: Final = "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ"


def format_timestamp(value: datetime) -> str:
    """RFC 3339, UTC, microseconds, ``Z``: the one textual form of an event time."""
    if value.tzinfo is None:
        raise ValueError("audit timestamps are timezone-aware")
    return utc_text(value.astimezone(UTC))


def utc_text(value: datetime) -> str:
    """``format_timestamp`` of a time already in UTC (aware, or naive standing for UTC).

    The text is ``strftime(_STRFTIME)``'s; ``%``-formatting the fields gives the same
    characters in a third of the time (``strftime`` was a twentieth of the sealer's cost
    per event). Years before 1000 keep ``strftime``: whether its ``%Y`` pads them to four
    digits depends on the C library, and the text must stay whatever it was.
    """
    year = value.year
    if year < 1000:
        return value.strftime(_STRFTIME)
    return _FIELDS % (
        year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


def _clean_str(value: str) -> str:
    if value.isascii():  # the usual case, and no surrogate can hide in it
        return value
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


def _cleaned(item: object, depth: int) -> object:
    """``_clean(item, depth + 1)`` for an item of a container at ``depth``; the usual
    scalars are answered here, without that call."""
    if type(item) is str and item.isascii():  # no surrogate can hide in ASCII
        return item
    if type(item) is int or type(item) is bool or item is None:
        return item
    return _clean(item, depth + 1)


def _clean_dict(value: dict[Any, object], depth: int) -> dict[Any, object]:
    """``value`` itself when nothing in it changes, else a copy with str keys.

    Each item is cleaned once: the copy starts at the first change, from the items
    kept so far, and takes the cleaned items from there. (Cleaning an item again for
    the copy doubled the work at every level, 2**32 steps for details nested 40 deep.)
    """
    copy: dict[str, object] | None = None
    for index, (key, item) in enumerate(value.items()):
        new = _cleaned(item, depth)
        if copy is None and (type(key) is not str or new is not item):
            copy = {_clean_str(k): v for k, v in islice(value.items(), index)}
        if copy is not None:
            copy[_clean_str(str(key))] = new
    return value if copy is None else copy


def _clean_list(value: list[object], depth: int) -> list[object]:
    """``value`` itself when nothing in it changes, else a copy (each item cleaned once)."""
    copy: list[object] | None = None
    for index, item in enumerate(value):
        new = _cleaned(item, depth)
        if copy is None and new is not item:
            copy = value[:index]
        if copy is not None:
            copy.append(new)
    return value if copy is None else copy


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
        return _clean_dict(value, depth)
    if t is list:
        assert isinstance(value, list)
        return _clean_list(value, depth)
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
    return _document(row, format_timestamp(row.occurred_at))


def stored_event_document(row: Any) -> dict[str, object]:
    """``event_document`` of a row whose ``occurred_at`` is already the event time's text
    (``format_timestamp``'s), as ``audit.repository.unsealed_events`` reads events for the
    sealer: built straight from the stored text, without a ``datetime`` in between.

    The same dictionary as ``event_document`` (one definition, ``_document``), so the same
    leaf: ``tests/audit/test_seal_fast_path.py`` compares the two on both databases.
    """
    return _document(row, row.occurred_at)


def stored_event_leaf_hash(row: Any) -> bytes:
    """The leaf hash of ``stored_event_document(row)``: ``event_leaf_hash`` of it, faster.

    ``canonical.event_leaf_hash`` walks the document to check it holds only plain JSON
    types. Here ``details`` went through ``_clean``, which leaves nothing else; the
    other values are the columns, checked in one pass (a SQLite column can hold a float
    or bytes whatever its declared type). When they are plain the document goes
    unwalked to ``plain_leaf_hash``; otherwise through ``event_leaf_hash``, which hashes
    or refuses it exactly as before.
    """
    document = _document(row, row.occurred_at)
    columns = (
        row.id,
        row.occurred_at,
        row.actor_client_id,
        row.actor_name,
        row.actor_kind,
        row.action,
        row.target_type,
        row.target_id,
        row.uscc,
        row.purpose,
        row.outcome,
        row.status,
        row.request_id,
        row.ip,
    )  # every value of ``_document`` but ``details``
    if _SCALARS.issuperset(map(type, columns)):
        return plain_leaf_hash(document)
    return event_leaf_hash(document)


def _document(row: Any, occurred_at: str) -> dict[str, object]:
    """The document of ``row`` with the event time given as text (see ``event_document``)."""
    details = row.details
    return {
        "id": row.id,
        "occurred_at": occurred_at,
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
