"""The event document: one canonical form whatever the stored values, and a reversible,
formula-safe CSV rendering."""

from __future__ import annotations

import csv
import enum
import io
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.canonical import canonical_event_bytes
from audit.documents import (
    CSV_COLUMNS,
    csv_cell,
    csv_row,
    document_from_csv_row,
    event_document,
    format_timestamp,
    public_event,
)


class Colour(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


def _row(**overrides: object) -> SimpleNamespace:
    values: dict[str, object] = {
        "pk": 1,
        "id": "evt_x",
        "occurred_at": datetime(2026, 5, 1, 8, 30, tzinfo=timezone(timedelta(hours=8))),
        "actor_client_id": "cs_1",
        "actor_name": "平台",
        "actor_kind": "client",
        "action": "credit_check.create",
        "target_type": None,
        "target_id": None,
        "uscc": None,
        "purpose": None,
        "outcome": "success",
        "status": 201,
        "request_id": "req_1",
        "ip": None,
        "details": {},
    }
    values.update(overrides)
    return SimpleNamespace(**values)


def test_timestamps_have_one_text_form() -> None:
    assert (
        format_timestamp(datetime(2026, 5, 1, 0, 30, tzinfo=UTC)) == "2026-05-01T00:30:00.000000Z"
    )
    doc = event_document(_row())
    assert doc["occurred_at"] == "2026-05-01T00:30:00.000000Z"  # +08:00 to UTC
    with pytest.raises(ValueError, match="timezone"):
        format_timestamp(datetime(2026, 5, 1))


def test_details_are_normalised_for_the_canonical_encoding() -> None:
    details = {
        "rate": 2.5,
        "whole": 10.0,
        "inf": float("inf"),
        "bad": "a\ud800b",
        1: "numeric key",
        "enum": Colour.RED,
        "level": Level.HIGH,
        "nested": [{"x": 0.1}, ("t", None)],
        "plain": {"ok": [1, True, None, "中文"]},
    }
    doc = event_document(_row(details=details))
    assert doc["details"] == {
        "rate": "2.5",
        "whole": "10.0",
        "inf": "inf",
        "bad": "a\ufffdb",
        "1": "numeric key",
        "enum": "red",
        "level": 3,
        "nested": [{"x": "0.1"}, ["t", None]],
        "plain": {"ok": [1, True, None, "中文"]},
    }
    canonical_event_bytes(doc)  # accepted
    plain = {"a": [1, {"b": "c"}]}
    assert event_document(_row(details=plain))["details"] is plain  # nothing copied


def test_public_event_puts_seq_after_the_id() -> None:
    event = public_event(_row(), 7)
    assert list(event)[:3] == ["id", "seq", "occurred_at"]
    assert canonical_event_bytes(event) == canonical_event_bytes(event_document(_row()))


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (None, ""),
        ("", "'"),
        ("plain", "plain"),
        ("=SUM(A1)", "'=SUM(A1)"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@cmd", "'@cmd"),
        ("\tx", "'\tx"),
        ("'quoted", "''quoted"),
        (42, "42"),
        (True, "true"),
    ],
)
def test_csv_cells_are_formula_safe(value: object, cell: str) -> None:
    assert csv_cell(value) == cell


@given(
    st.fixed_dictionaries(
        {
            "name": st.one_of(st.none(), st.text()),
            "uscc": st.one_of(st.none(), st.text(max_size=18)),
            "details": st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text())),
        }
    )
)
def test_csv_round_trip(values: dict[str, object]) -> None:
    row = _row(actor_name=values["name"], uscc=values["uscc"], details=values["details"])
    event = public_event(row, 3)
    buffer = io.StringIO()
    csv.writer(buffer).writerow(csv_row(event))
    (read,) = csv.reader(io.StringIO(buffer.getvalue(), newline=""))
    assert document_from_csv_row(dict(zip(CSV_COLUMNS, read, strict=True))) == event
