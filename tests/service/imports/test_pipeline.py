"""The pipeline below HTTP: line splitting, batches, caps, and failure isolation."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.imports.lines import LineSplitter, RawLine
from service.imports.pipeline import ImportPipeline
from service.merchants import repository
from service.models import CreditRecord, Merchant
from tests.fixtures.factories import random_uscc
from tests.service.imports.lines_helpers import merchant_line, record_line


def make(client: TestClient, **kwargs: Any) -> ImportPipeline:
    app: Any = client.app
    return ImportPipeline(app.state.sessionmaker, app.state.keyring, actor="test", **kwargs)


def lines_of(*objs: dict[str, Any]) -> list[bytes]:
    return [json.dumps(o, ensure_ascii=False).encode() for o in objs]


# ---- splitting ---------------------------------------------------------------------------
def split(data: bytes, chunk: int, limit: int = 64) -> list[RawLine]:
    splitter = LineSplitter(limit)
    out: list[RawLine] = []
    for start in range(0, len(data), chunk):
        out.extend(splitter.feed(data[start : start + chunk]))
    return out + splitter.close()


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1000])
def test_splitting_does_not_depend_on_chunks(chunk: int) -> None:
    data = b"first\nsecond\n\nthird line\nlast"
    assert split(data, chunk) == [
        RawLine(1, b"first"),
        RawLine(2, b"second"),
        RawLine(3, b""),
        RawLine(4, b"third line"),
        RawLine(5, b"last"),
    ]


@pytest.mark.parametrize("chunk", [1, 5, 100, 10_000])
def test_overlong_lines_are_dropped_not_buffered(chunk: int) -> None:
    data = b"short\n" + b"x" * 65 + b"\nafter\n" + b"y" * 200
    assert split(data, chunk) == [
        RawLine(1, b"short"),
        RawLine(2, None),
        RawLine(3, b"after"),
        RawLine(4, None),
    ]
    exact = b"z" * 64 + b"\n"
    assert split(exact, chunk) == [RawLine(1, b"z" * 64)]


def test_trailing_newline_adds_no_line() -> None:
    assert split(b"a\n", 10) == [RawLine(1, b"a")]
    assert split(b"", 10) == []


# ---- batches -----------------------------------------------------------------------------
def test_batches_and_deferred_records_keep_line_numbers(client: TestClient, db: Session) -> None:
    codes = [random_uscc() for _ in range(7)]
    objs: list[dict[str, Any]] = [record_line(c) for c in codes]  # all before their merchants
    objs += [merchant_line(c) for c in codes]
    objs.insert(3, {"kind": "record"})  # line 4: bad
    objs.append(record_line(random_uscc()))  # last line: unknown merchant
    pipeline = make(client, batch_lines=3)
    pipeline.feed_lines(lines_of(*objs))
    report = pipeline.finish()
    assert report.accepted == 14
    assert [r.number for r in report.rejected] == [4, len(objs)]
    db.expire_all()
    for code in codes:
        assert db.get(Merchant, code) is not None


def test_reported_rejections_are_capped_first_lines_first(client: TestClient) -> None:
    pipeline = make(client, batch_lines=4, max_reported=5)
    objs = [record_line(random_uscc()) for _ in range(12)]  # parked, rejected at the end
    bad = [b"not json"] * 12
    pipeline.feed_lines([*lines_of(*objs), *bad])
    report = pipeline.finish()
    assert report.rejected_count == 24
    assert [r.number for r in report.rejected] == [1, 2, 3, 4, 5]
    result = report.to_result()
    assert result.rejected_count == 24
    assert len(result.rejected) == 5


def test_a_line_the_database_refuses_does_not_sink_its_batch(
    client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = repository.insert_merchants

    def refusing(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
        if any(row["name"] == "REFUSED BY THE DATABASE" for row in rows):
            raise IntegrityError("INSERT", {}, Exception("simulated"))
        real(session, rows)

    monkeypatch.setattr(repository, "insert_merchants", refusing)
    good = [random_uscc() for _ in range(4)]
    bad = random_uscc()
    objs = [
        merchant_line(good[0]),
        merchant_line(good[1]),
        merchant_line(bad, name="REFUSED BY THE DATABASE"),
    ]
    objs += [merchant_line(good[2]), record_line(good[2]), merchant_line(good[3])]
    pipeline = make(client, batch_lines=100)
    pipeline.feed_lines(lines_of(*objs))
    report = pipeline.finish()
    assert report.accepted == 5
    assert [(r.number, r.errors[0][0]) for r in report.rejected] == [(3, "line")]
    db.expire_all()
    assert all(db.get(Merchant, code) is not None for code in good)
    assert db.get(Merchant, bad) is None
    assert db.query(CreditRecord).filter(CreditRecord.uscc == good[2]).count() == 1


def test_dry_run_pipeline_leaves_no_rows(client: TestClient, db: Session) -> None:
    code = random_uscc()
    pipeline = make(client, dry_run=True, batch_lines=2)
    pipeline.feed_lines(lines_of(record_line(code), merchant_line(code), record_line(code)))
    report = pipeline.finish()
    assert report.accepted == 3
    assert db.get(Merchant, code) is None
