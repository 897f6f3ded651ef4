"""The sealer's fast path gives every event the leaf the verifier computes.

The sequencer reads candidates as ``EventRecord``s (driver values converted once),
builds their documents with ``stored_event_document`` and hashes them without the
canonical walk (``stored_event_leaf_hash``). The verifier, the API and the bundle read
events through the ORM's typed rows and ``event_leaf_hash(event_document(row))``: the two
must give the same bytes for every event, or sealed logs stop verifying. Here they are
compared on awkward events written both ways the application writes them, on the
database of the run (SQLite, or PostgreSQL with ``CREDITSHARE_TEST_DATABASE_URL``);
against the implementation before the fast path, on generated values; and the batch's
new shape is checked: reading and hashing happen before the write gate, events sealed
meanwhile are dropped under the lock.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from audit import repository as repo
from audit import sealer as sealer_module
from audit.bundle import verify_bundle, write_bundle
from audit.canonical import event_leaf_hash
from audit.documents import (
    event_document,
    format_timestamp,
    stored_event_document,
    stored_event_leaf_hash,
    utc_text,
)
from audit.recorder import insert_event_rows
from service.db.base import utcnow
from service.ids import new_id
from service.models import AuditEvent
from tests.audit.support import (
    FreshApp,
    add_events,
    assert_sealed_exactly_once,
    event_count,
    fresh_app,
    log_state,
    query,
    run_sql,
)
from tests.fixtures.databases import using_postgres

BASE = datetime(2026, 5, 1, 8, 30, 0, 123456, tzinfo=UTC)


def _deep(levels: int) -> object:
    value: object = {"leaf": "bottom"}
    for i in range(levels):
        value = {f"l{i}": [value]}
    return value


AWKWARD: dict[str, dict[str, object]] = {
    "plain": {},
    "non_ascii": {
        "actor_name": "天津市 商户 😀 e\u0301",
        "target_id": "مرحبا",
        "details": {"名": "值", "emoji": "😀", "nul": "\u0000", "separator": "\u2028", "é": 1},
    },
    "nested": {"details": {"a": {"b": [1, {"c": [None, True, False, "x"]}], "d": {}}, "e": []}},
    "null_columns": {
        "actor_client_id": None,
        "actor_name": None,
        "target_type": None,
        "target_id": None,
        "uscc": None,
        "purpose": None,
        "ip": None,
        "details": None,
    },
    "null_values": {"details": {"x": None, "y": [None, {"z": None}]}},
    "empty_strings": {"actor_name": "", "uscc": "", "details": {"": "", " ": 2, "a.b": 3}},
    "whole_second": {"occurred_at": datetime(2026, 5, 1, 8, 30, tzinfo=UTC)},
    "last_microsecond": {"occurred_at": datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)},
    "other_zone": {
        "occurred_at": datetime(2026, 5, 1, 2, 0, 0, 5, tzinfo=timezone(timedelta(hours=-5.5)))
    },
    "year_999": {"occurred_at": datetime(999, 12, 31, 23, 59, 59, 7, tzinfo=UTC)},
    "year_1": {"occurred_at": datetime(1, 1, 1, 0, 0, 1, tzinfo=UTC)},
    "large_ints": {
        "status": 2**31 - 1,
        "details": {
            "max63": 2**63 - 1,
            "min63": -(2**63),
            "u64": 2**64 - 1,
            "beyond": 2**64,
            "negative": -(2**70),
            "huge": 10**30,
            "in_list": [2**65, -1, 0],
        },
    },
    "floats": {
        "details": {
            "half": 2.5,
            "whole": 10.0,
            "tiny": 1e-7,
            "big": 1e300,
            "negative_zero": -0.0,
            "sum": 0.1 + 0.2,
            "nested": [1.5, {"f": 3.25}],
        }
    },
    "lone_surrogate": {"details": {"bad": "a\ud800b", "list": ["\udfff"]}},
    "deep": {"details": _deep(40)},
    "list_details": {"details": [1, "two", {"3": 4}, [5.5]]},
    "string_details": {"details": "just text"},
    "unsorted_keys": {"details": {"b": 1, "a": 2, "B": 3, "é": 4, "e": 5, "aa": 6}},
}
if not using_postgres():  # PostgreSQL's json type refuses NaN and Infinity
    AWKWARD["non_finite"] = {"details": {"nan": math.nan, "inf": math.inf, "ninf": -math.inf}}


def _values(name: str, overrides: Mapping[str, object]) -> dict[str, object]:
    values: dict[str, object] = {
        "id": new_id("evt"),
        "occurred_at": BASE,
        "actor_client_id": "cs_client",
        "actor_name": "Merchant Bank",
        "actor_kind": "client",
        "action": "credit_check.create",
        "target_type": "credit_check",
        "target_id": "chk_1",
        "uscc": "91120000MA05K0XX3X",
        "purpose": "loan",
        "outcome": "success",
        "status": 201,
        "request_id": f"req-{name}",
        "ip": "192.0.2.1",
        "details": {"case": name},
    }
    values.update(overrides)
    return values


def _write_awkward(fresh: FreshApp) -> int:
    """Every awkward event twice: through Core (the ORM's types) and through the hot path's
    ``BulkInsert`` (its own conversions; COPY on PostgreSQL). Returns how many."""
    with fresh.sessionmaker() as session, session.begin():
        session.execute(insert(AuditEvent), [_values(n, v) for n, v in AWKWARD.items()])
    hot = [_values(n, v) for n, v in AWKWARD.items() if v.get("details", {}) is not None]
    with fresh.sessionmaker() as session, session.begin():  # (its events always have details)
        insert_event_rows(session.connection(), hot)
    return len(AWKWARD) + len(hot)


def _old_leaves(session: Session) -> dict[int, tuple[dict[str, object], bytes]]:
    """What the sealer computed before: ORM-typed rows, ``event_document``, ``event_leaf_hash``."""
    rows = session.execute(select(*repo.EVENT_COLUMNS).order_by(AuditEvent.pk)).all()
    return {row.pk: (event_document(row), event_leaf_hash(event_document(row))) for row in rows}


def _new_leaves(session: Session) -> dict[int, tuple[dict[str, object], bytes]]:
    return {
        record.pk: (stored_event_document(record), stored_event_leaf_hash(record))
        for record in repo.unsealed_events(session, 0, 10_000)
    }


@pytest.fixture
def fresh(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[FreshApp]:
    label = "fast_" + request.node.name.removeprefix("test_")[:24]
    with fresh_app(tmp_path, label) as app:
        yield app


# ---- the same leaf, on the database of the run -------------------------------------------------


def test_awkward_events_get_the_same_document_and_leaf_both_ways(fresh: FreshApp) -> None:
    written = _write_awkward(fresh)
    with fresh.sessionmaker() as session:
        old, new = _old_leaves(session), _new_leaves(session)
    assert len(new) >= written
    assert new.keys() == old.keys()
    for pk, (document, leaf) in old.items():
        assert new[pk][0] == document, pk
        assert new[pk][1] == leaf, (pk, document)


def test_awkward_events_seal_into_a_log_both_verifiers_accept(
    fresh: FreshApp, tmp_path: Path
) -> None:
    _write_awkward(fresh)
    total = event_count(fresh.sessionmaker)
    assert fresh.sequencer(batch_size=7).drain() == total
    assert_sealed_exactly_once(fresh)
    with fresh.sessionmaker() as session:
        rows = repo.sealed_events(session, 1, total)
        assert [row.leaf_hash for row in rows] == [
            event_leaf_hash(event_document(row)).hex() for row in rows
        ]
        summary = write_bundle(session, fresh.key_store, fresh.origin, tmp_path / "bundle")
    assert summary.events == total
    offline = verify_bundle(tmp_path / "bundle")
    assert offline.ok, offline
    assert offline.checked == total


@pytest.mark.skipif(using_postgres(), reason="PostgreSQL's column types refuse such values")
def test_odd_stored_values_give_the_same_leaf_or_the_same_refusal(fresh: FreshApp) -> None:
    """SQLite keeps whatever raw SQL writes; for each such row both paths must agree: the
    same leaf, or an error of the same type (the sealer stops there, as it did)."""
    stored = {
        "no_fraction": {"occurred_at": "2026-05-01 08:30:00"},
        "iso_t_and_offset": {"occurred_at": "2026-05-01T16:30:00.5+08:00"},
        "naive_iso_t": {"occurred_at": "2026-05-01T08:30:00.000001"},
        "year_999": {"occurred_at": "0999-01-02 03:04:05.000006"},
        "not_a_time": {"occurred_at": "yesterday"},
        "float_status": {"status": 201.5},
        "text_status": {"status": "two hundred"},
        "number_details": {"details": "5"},
        "string_details": {"details": '"text"'},
        "broken_details": {"details": "{broken"},
        "blob_name": {"actor_name": b"\x00\xff"},
    }
    columns = [*_values("x", {}), "pk"]
    names = ", ".join(columns)
    marks = ", ".join(f":{c}" for c in columns)
    pk = 10_000
    outcomes: dict[str, int] = {}
    for name, overrides in stored.items():
        pk += 1
        row = _values(name, {"occurred_at": "2026-05-01 08:30:00.000000", "pk": pk})
        row["details"] = json.dumps(row["details"])
        row.update(overrides)
        run_sql(fresh.url, f"INSERT INTO audit_events ({names}) VALUES ({marks})", **row)
        outcomes[name] = pk
    with fresh.sessionmaker() as session:
        for name, event_pk in outcomes.items():
            old = _outcome(lambda pk=event_pk: _old_one(session, pk))  # type: ignore[misc]
            new = _outcome(lambda pk=event_pk: _new_one(session, pk))  # type: ignore[misc]
            assert new == old, name


def _old_one(session: Session, pk: int) -> bytes:
    row = session.execute(select(*repo.EVENT_COLUMNS).where(AuditEvent.pk == pk)).one()
    return event_leaf_hash(event_document(row))


def _new_one(session: Session, pk: int) -> bytes:
    (record,) = repo.unsealed_events_in(session, [(pk, pk)], 2**62, 1)
    return stored_event_leaf_hash(record)


def _outcome(compute: Callable[[], bytes]) -> bytes | type[BaseException]:
    try:
        return compute()
    except Exception as exc:
        return type(exc)


# ---- the pure functions, against the implementation before the fast path -----------------------


def _reference_clean(value: object, depth: int = 0) -> object:
    """``audit.documents._clean`` as it was (commit 41167e3), the definition kept here."""
    from collections.abc import Mapping as AnyMapping

    def clean_str(text: str) -> str:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
        return text

    t = type(value)
    if t is str:
        assert isinstance(value, str)
        return clean_str(value)
    if t is int or t is bool or value is None:
        return value
    if t is float:
        assert isinstance(value, float)
        return repr(value) if math.isfinite(value) else str(value)
    if depth >= 32:
        return clean_str(json.dumps(value, default=str, ensure_ascii=False))
    if t is dict:
        assert isinstance(value, dict)
        for key, item in value.items():
            if type(key) is not str or _reference_clean(item, depth + 1) is not item:
                return {clean_str(str(k)): _reference_clean(v, depth + 1) for k, v in value.items()}
        return value
    if t is list:
        assert isinstance(value, list)
        for item in value:
            if _reference_clean(item, depth + 1) is not item:
                return [_reference_clean(v, depth + 1) for v in value]
        return value
    if isinstance(value, AnyMapping):
        return {clean_str(str(k)): _reference_clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_reference_clean(v, depth + 1) for v in value]
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return clean_str(str.__str__(value))
    return clean_str(str(value))


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**62, max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.text(alphabet=st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010)),  # surrogates
)
_json_like = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=4), inner, max_size=4),
        st.dictionaries(st.integers(), inner, max_size=2),
    ),
    max_leaves=25,
)
_times = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(-timedelta(hours=3))]),
)


@given(_times)
def test_the_event_time_text_is_strftimes(value: datetime) -> None:
    expected = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # the old definition
    assert format_timestamp(value) == expected
    assert utc_text(value.astimezone(UTC)) == expected
    assert utc_text(value.astimezone(UTC).replace(tzinfo=None)) == expected


@settings(max_examples=300)
@given(_json_like)
def test_details_are_cleaned_as_before(details: object) -> None:
    row = SimpleNamespace(**{**_values("h", {}), "details": details})
    expected = _reference_clean(details) if details is not None else {}
    document = event_document(row)
    assert document["details"] == expected or _same_nan(document["details"], expected)
    if details is not None and _reference_clean(details) is details:  # nothing copied, still
        assert document["details"] is details


def _same_nan(left: object, right: object) -> bool:
    return json.dumps(left, default=str) == json.dumps(right, default=str)


@settings(max_examples=300)
@given(_json_like, _times, st.sampled_from([201, 0, -(2**70), 2**64]))
def test_the_unwalked_leaf_is_the_walked_leaf(
    details: object, occurred_at: datetime, status: int
) -> None:
    values = {**_values("h", {}), "details": details, "status": status}
    row = SimpleNamespace(**{**values, "occurred_at": occurred_at})
    record = repo.EventRecord(pk=1, **{**values, "occurred_at": format_timestamp(occurred_at)})
    assert stored_event_document(record) == event_document(row) or _same_nan(
        stored_event_document(record), event_document(row)
    )
    assert _outcome(lambda: stored_event_leaf_hash(record)) == _outcome(
        lambda: event_leaf_hash(event_document(row))
    )


@pytest.mark.parametrize("odd", [201.5, b"\x00", 3.0 + 0j, ["a"], {"k": "v"}])
@pytest.mark.parametrize("column", ["status", "actor_name", "target_id", "ip"])
def test_an_odd_column_value_takes_the_checked_path(column: str, odd: object) -> None:
    values = {**_values("odd", {}), column: odd}
    row = SimpleNamespace(**{**values, "occurred_at": BASE})
    record = repo.EventRecord(pk=1, **{**values, "occurred_at": format_timestamp(BASE)})
    assert _outcome(lambda: stored_event_leaf_hash(record)) == _outcome(
        lambda: event_leaf_hash(event_document(row))
    )


# ---- the batch: before the gate, and under the lock ---------------------------------------------


def test_candidates_are_read_and_hashed_before_the_gate_and_sealed_under_it(
    fresh: FreshApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    held: list[bool] = []
    calls: dict[str, set[bool]] = {}

    @contextmanager
    def gate() -> Iterator[None]:
        held.append(True)
        try:
            yield
        finally:
            held.pop()

    def spy(module: Any, name: str) -> None:
        original = getattr(module, name)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            calls.setdefault(name, set()).add(bool(held))
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapped)

    for name in ("unsealed_events_in", "lock_sequencer", "sealed_among", "insert_entries"):
        spy(repo, name)
    spy(sealer_module, "stored_event_leaf_hash")
    add_events(fresh.sessionmaker, 12)
    total = event_count(fresh.sessionmaker)
    assert fresh.sequencer(batch_size=5, write_guard=gate).drain() == total
    assert calls == {
        "unsealed_events_in": {False},
        "stored_event_leaf_hash": {False},
        "lock_sequencer": {True},
        "sealed_among": {True},
        "insert_entries": {True},
    }
    monkeypatch.undo()
    assert_sealed_exactly_once(fresh)


def test_events_sealed_by_another_sequencer_after_the_read_are_dropped(fresh: FreshApp) -> None:
    """No lease between them: the rival seals the lowest candidates while our batch, read
    and hashed, waits for the gate. Under the lock ours drops them and seals the rest."""
    add_events(fresh.sessionmaker, 10)
    total = event_count(fresh.sessionmaker)
    rival = fresh.sequencer(batch_size=4, holder="rival")
    rival_sealed: list[int] = []

    @contextmanager
    def gate() -> Iterator[None]:
        if not rival_sealed:
            rival_sealed.append(rival.seal_batch().sealed)
        yield

    ours = fresh.sequencer(batch_size=total, write_guard=gate)
    result = ours.seal_batch()
    assert rival_sealed == [4]
    assert (result.sealed, result.size) == (total - 4, total)
    assert not ours.pending()  # the rival's pks became gaps of our cursor: probed, sealed
    assert_sealed_exactly_once(fresh)


def test_a_batch_whose_candidates_were_all_sealed_meanwhile_seals_nothing(
    fresh: FreshApp,
) -> None:
    add_events(fresh.sessionmaker, 3)
    total = event_count(fresh.sessionmaker)
    rival = fresh.sequencer(holder="rival")

    @contextmanager
    def gate() -> Iterator[None]:
        rival.drain()
        yield

    result = fresh.sequencer(write_guard=gate).seal_batch()
    assert (result.sealed, result.size) == (0, total)
    assert_sealed_exactly_once(fresh)


def test_preparing_a_batch_yields_the_gil_outside_the_gate(
    fresh: FreshApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While hashing a batch the sequencer gives the GIL away every ``YIELD_EVERY`` events
    (so that a big batch does not stall the process's requests), and never while it holds
    the write gate."""
    add_events(fresh.sessionmaker, 3 * sealer_module.YIELD_EVERY + 5)
    total = event_count(fresh.sessionmaker)
    yields: list[bool] = []
    in_gate: list[bool] = [False]
    real_sleep = sealer_module.time.sleep
    me = threading.current_thread()

    def sleep(seconds: float) -> None:
        if threading.current_thread() is me:  # time.sleep is shared with other threads
            yields.append(in_gate[0])
        real_sleep(seconds)

    @contextmanager
    def gate() -> Iterator[None]:
        in_gate[0] = True
        try:
            yield
        finally:
            in_gate[0] = False

    monkeypatch.setattr(sealer_module.time, "sleep", sleep)
    result = fresh.sequencer(batch_size=total, write_guard=gate).seal_batch()
    assert result.sealed == total
    assert yields == [False] * (total // sealer_module.YIELD_EVERY)
    assert_sealed_exactly_once(fresh)


def test_log_entries_store_sealed_at_as_core_does(fresh: FreshApp) -> None:
    """``insert_entries`` converts ``sealed_at`` once per batch with the column's own bind
    processing: the stored value is the one Core stores for the checkpoint's
    ``created_at`` (the same instant)."""
    add_events(fresh.sessionmaker, 3)
    fresh.seal_all()
    rows = query(
        fresh.url,
        "SELECT l.sealed_at, c.created_at FROM audit_log l "
        "JOIN audit_checkpoints c ON c.size = (SELECT max(size) FROM audit_checkpoints)",
    )
    assert rows
    assert all(sealed_at == created_at for sealed_at, created_at in rows)


def test_a_conflicting_log_entry_is_an_integrity_error(fresh: FreshApp) -> None:
    """The COPY on PostgreSQL bypasses SQLAlchemy; its errors still come out as SQLAlchemy's,
    which ``drain`` treats as a conflict with another sequencer."""
    add_events(fresh.sessionmaker, 1)
    fresh.seal_all()
    _, pks = log_state(fresh.sessionmaker)
    with pytest.raises(IntegrityError), fresh.sessionmaker() as session, session.begin():
        repo.insert_entries(session, 1, [pks[0]], ["00" * 32], utcnow())


def test_sealed_among_answers_by_ranges_and_by_list(fresh: FreshApp) -> None:
    add_events(fresh.sessionmaker, 40)
    fresh.seal_all()
    add_events(fresh.sessionmaker, 40)  # unsealed
    _, sealed = log_state(fresh.sessionmaker)
    with fresh.sessionmaker() as session:
        every = sorted(session.scalars(select(AuditEvent.pk)))
        probes = {
            "one run across the boundary": every[20:60],
            "a few runs": every[:3] + every[10:12] + every[45:50] + every[-2:],
            "scattered: the list": every[::2],
            "one pk": every[-1:],
        }
        assert len(repo._runs(probes["scattered: the list"])) > repo.MAX_PK_RUNS
        for name, pks in probes.items():
            assert repo.sealed_among(session, pks) == set(pks) & set(sealed), name
