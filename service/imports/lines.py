"""From bytes to validated import lines: splitting a stream, parsing, line-level checks.

Nothing here touches the database. Error messages are fixed sentences or the
schema's own wording; the submitted content is never echoed back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from pydantic import ValidationError

from schemas.imports import MerchantLine, RecordLine
from schemas.uscc import USCC_LENGTH, USCCError, normalize_uscc
from service.merchants.rows import CheckedCode, check_code
from service.problems.errors import MAX_ERROR_MESSAGE

MAX_LINE_BYTES = 64 * 1024
_BOM = b"\xef\xbb\xbf"
_SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

FieldErrors = list[tuple[str, str]]


class RawLine(NamedTuple):
    number: int
    """1-based position in the input, blank lines included."""
    data: bytes | None
    """The line without its end of line; None if it was longer than the limit."""


class LineSplitter:
    """Cuts a byte stream into numbered lines without holding more than one line.

    A line longer than ``max_line_bytes`` is not buffered: its bytes are dropped as
    they arrive and it comes out as ``data=None``, to be rejected by number.
    """

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        self._buffer = bytearray()
        self._overlong = False
        self._number = 0

    def feed(self, chunk: bytes) -> list[RawLine]:
        lines: list[RawLine] = []
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            lines.append(self._emit(chunk[start:end]))
            start = end + 1
        if start < len(chunk):
            self._append(chunk[start:])
        return lines

    def close(self) -> list[RawLine]:
        """The last line, if the input did not end with a newline."""
        if self._buffer or self._overlong:
            return [self._emit(b"")]
        return []

    def _append(self, piece: bytes) -> None:
        if self._overlong:
            return
        if len(self._buffer) + len(piece) > self.max_line_bytes:
            self._overlong = True
            self._buffer.clear()
        else:
            self._buffer += piece

    def _emit(self, piece: bytes) -> RawLine:
        if self._buffer or self._overlong:
            self._append(piece)
            data: bytes | None = None if self._overlong else bytes(self._buffer)
        else:
            data = piece if len(piece) <= self.max_line_bytes else None
        self._buffer.clear()
        self._overlong = False
        self._number += 1
        return RawLine(self._number, data)


# ---- parsing -----------------------------------------------------------------------------
@dataclass(slots=True)
class MerchantItem:
    number: int
    line: MerchantLine
    code: CheckedCode


@dataclass(slots=True)
class RecordItem:
    number: int
    line: RecordLine
    code: str
    """Normalised, 18 characters; checked only if no merchant holds it (legacy codes exist)."""
    source: bytes | Mapping[str, Any]
    """The line as given, kept to park the record until its merchant turns up."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.line.source, self.line.source_record_id)

    def raw(self) -> bytes:
        return self.source if isinstance(self.source, bytes) else orjson.dumps(self.source)


@dataclass(slots=True)
class Rejection:
    number: int
    errors: FieldErrors


Parsed = MerchantItem | RecordItem | Rejection


def _field(loc: Sequence[Any]) -> str:
    parts = [str(p) if isinstance(p, str) and _SAFE_NAME.match(p) else "<field>" for p in loc]
    return ".".join(parts) or "line"


def _message(error: Any) -> str:
    if error.get("type") == "missing":
        return "Field required"
    return str(error.get("msg", "Invalid value"))[:MAX_ERROR_MESSAGE]


def _schema_errors(exc: ValidationError) -> FieldErrors:
    return [(_field(e.get("loc", ())), _message(e)) for e in exc.errors()[:20]]


def parse(line: RawLine) -> Parsed | None:
    """One line as a merchant or record ready to store, or why not; None for a blank line."""
    data = line.data
    if data is None:
        return Rejection(
            line.number, [("line", f"Longer than {MAX_LINE_BYTES // 1024} KiB: not read")]
        )
    if line.number == 1 and data.startswith(_BOM):
        data = data[len(_BOM) :]
    if data.endswith(b"\r"):
        data = data[:-1]
    if not data.strip():
        return None
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return Rejection(line.number, [("line", "Not valid JSON (or not UTF-8)")])
    return parse_object(line.number, obj, data)


def parse_object(number: int, obj: object, data: bytes | None = None) -> Parsed:
    """A decoded line (e.g. straight from the demo generator) as a merchant or record."""
    if not isinstance(obj, dict):
        return Rejection(number, [("line", "Must be a JSON object")])
    kind = obj.get("kind")
    try:
        if kind == "merchant":
            merchant = MerchantLine.model_validate(obj)
            return MerchantItem(number, merchant, check_code(merchant.uscc))
        if kind == "record":
            record = RecordLine.model_validate(obj)
            code = normalize_uscc(record.uscc)
            if len(code) != USCC_LENGTH:
                raise USCCError("length")
            return RecordItem(number, record, code, obj if data is None else data)
    except ValidationError as exc:
        return Rejection(number, _schema_errors(exc))
    except USCCError as exc:
        return Rejection(number, [("uscc", str(exc))])
    return Rejection(number, [("kind", 'Must be "merchant" or "record"')])
