"""Canonical bytes of an audit event, the input of its Merkle leaf hash.

The encoding is the JSON text that
``json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
produces, encoded as UTF-8, where ``body`` is the event without its top-level
``seq`` key:

* object keys sorted by code point at every depth, no whitespace;
* strings as UTF-8 (only ``"``, ``\\`` and control characters are escaped);
* integers in decimal, ``true``/``false``, ``null``;
* **floats are refused** (``TypeError``): their text form is not unambiguous
  across languages, and nothing in an audit event needs one -- amounts and
  counts are integers, timestamps are strings;
* any other type (``datetime``, ``Decimal``, ``bytes``...) is refused too, so
  the producer must put exactly what the verifier will read back into the event.

Coverage: every field of the event except ``seq`` is hashed -- ``id``,
``occurred_at``, ``actor``, ``action``, ``target``, ``uscc``, ``purpose``,
``outcome``, ``status``, ``request_id``, ``ip``, ``details``, and any field
added later. ``seq`` is left out because it is null until the event is sealed,
and because it is the event's position in the log, which the Merkle tree already
proves (leaf ``seq - 1``): moving an event changes the root just as editing it
does.

orjson is used for speed (it is about ten times faster than the standard
library and yields the same bytes for the accepted types); the standard library
is the fallback for what orjson cannot encode (integers beyond 64 bits).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

import orjson

from audit.merkle import leaf_hash

__all__ = ["MAX_DEPTH", "canonical_event_bytes", "event_leaf_hash", "plain_leaf_hash"]

MAX_DEPTH: Final = 64
"""Deepest nesting accepted; a bound keeps encoding total and identical everywhere."""

_SORT_KEYS: Final = orjson.OPT_SORT_KEYS


def _plain(value: object, depth: int) -> object:
    """Check ``value`` is encodable; return it, or a plain-typed copy when it is not.

    The common case (dicts, lists, str, int, bool, None) is returned as is,
    without copying, to keep hashing a million events fast.
    """
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    if depth >= MAX_DEPTH:
        raise ValueError(f"audit event nested deeper than {MAX_DEPTH} levels")
    if t is dict:
        assert isinstance(value, dict)
        for key, item in value.items():
            if type(key) is not str:
                raise TypeError(f"audit event keys must be str, not {type(key).__name__}")
            if _plain(item, depth + 1) is not item:
                return _plain_mapping(value, depth)
        return value
    if t is list or t is tuple:
        assert isinstance(value, list | tuple)
        for item in value:
            if _plain(item, depth + 1) is not item:
                return [_plain(v, depth + 1) for v in value]
        return value
    if isinstance(value, float):
        raise TypeError("floats are not allowed in audit events: use an int or a str")
    if isinstance(value, str):  # a str subclass such as StrEnum: encode its text
        return str.__str__(value)
    if isinstance(value, int):  # an int subclass such as IntEnum: encode its number
        return int.__int__(value)
    if isinstance(value, Mapping):
        return _plain_mapping(value, depth)
    if isinstance(value, list | tuple):
        return [_plain(v, depth + 1) for v in value]
    raise TypeError(f"cannot encode {type(value).__name__} in an audit event")


def _plain_mapping(value: Mapping[object, object], depth: int) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, item in value.items():
        if type(key) is not str:
            raise TypeError(f"audit event keys must be str, not {type(key).__name__}")
        out[key] = _plain(item, depth + 1)
    return out


def canonical_event_bytes(event: Mapping[str, object]) -> bytes:
    """The canonical UTF-8 JSON of ``event`` without its top-level ``seq`` (see module doc).

    Raises ``TypeError`` for floats, non-str keys and unsupported types, and
    ``ValueError`` for strings that are not valid Unicode (lone surrogates) or
    nesting deeper than ``MAX_DEPTH``.
    """
    if type(event) is dict and "seq" not in event:
        body: object = event
    else:
        body = {k: v for k, v in event.items() if k != "seq"}
    return _encode(_plain(body, 0))


def _encode(body: object) -> bytes:
    """The canonical bytes of ``body``, which ``_plain`` accepts as is."""
    try:
        return orjson.dumps(body, option=_SORT_KEYS)
    except orjson.JSONEncodeError:
        # Big integers, or a lone surrogate (which the encode below rejects).
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError("audit event holds a string that is not valid Unicode") from exc


def event_leaf_hash(event: Mapping[str, object]) -> bytes:
    """The Merkle leaf hash of an event: ``leaf_hash(canonical_event_bytes(event))``."""
    return leaf_hash(canonical_event_bytes(event))


def plain_leaf_hash(body: dict[str, object]) -> bytes:
    """``event_leaf_hash`` of an event the caller knows ``_plain`` returns unchanged -- only
    str, int, bool, None, lists and dicts with str keys, nested less than ``MAX_DEPTH``,
    no ``seq`` -- without walking it to check: the sealer's path, where the walk was
    about half the cost of hashing an event. It encodes the very object the walk would
    have returned, so the bytes are the same. Its one caller,
    ``documents.stored_event_leaf_hash``, checks what it vouches for.
    """
    return leaf_hash(_encode(body))
