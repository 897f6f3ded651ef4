"""The deterministic synthetic registry generator."""

from __future__ import annotations

import calendar
import json
import re
from collections import Counter
from datetime import date
from itertools import islice

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.uscc import ALPHABET, organisation_code_warning, uscc_problem_reason
from service.demo.generator import (
    _ORG_MULTIPLIER,
    DEFAULT_SEED,
    MAX_MERCHANTS,
    PUBLISHED_EXAMPLES,
    REFERENCE_DATE,
    _org_body,
    add_months,
    demo_registry,
    generate,
)

N = 20_000

MERCHANT_KEYS = {
    "kind",
    "uscc",
    "name",
    "entity_type",
    "registration_status",
    "registered_on",
    "legal_representative",
    "address",
}
RECORD_KEYS = {
    "kind",
    "source",
    "source_record_id",
    "uscc",
    "category",
    "severity",
    "status",
    "authority",
    "document_no",
    "decided_on",
    "publicity_until",
    "summary",
}
ENTITY_BY_PREFIX = {
    "91": "COMPANY",
    "92": "INDIVIDUAL_BUSINESS",
    "93": "COOPERATIVE",
    "52": "SOCIAL_ORGANIZATION",
    "12": "PUBLIC_INSTITUTION",
}
REGISTRATION_STATUSES = {"ACTIVE", "REVOKED", "DEREGISTERED"}
CATEGORIES = {
    "DISHONEST_JUDGMENT_DEBTOR",
    "JUDGMENT_DEBTOR",
    "SERIOUS_ILLEGAL_DISHONEST",
    "ABNORMAL_OPERATION",
    "ADMINISTRATIVE_PENALTY",
    "MAJOR_TAX_VIOLATION",
    "SOCIAL_INSURANCE_ARREARS",
    "COURT_CASE",
    "GAMBLING_SUSPECTED",
    "CREDIT_COMMITMENT_BREACH",
    "HONOR",
}
SEVERITIES = {"MINOR", "GENERAL", "SERIOUS"}
STATUSES = {"ACTIVE", "UNDER_OBJECTION", "REPAIRED", "EXPIRED", "REVOKED"}
TIANJIN_DIVISIONS = {
    "120101",
    "120102",
    "120103",
    "120104",
    "120105",
    "120106",
    "120110",
    "120111",
    "120112",
    "120113",
    "120114",
    "120115",
    "120116",
    "120117",
    "120118",
    "120119",
}
# Publicity period in months from decided_on (DOMAIN.md), inclusive bounds.
PERIOD_MONTHS = {"MINOR": (0, 3), "GENERAL": (3, 12), "SERIOUS": (12, 36)}
MIN_MONTHS_BEFORE_REPAIR = {"MINOR": 0, "GENERAL": 3, "SERIOUS": 12}
EXPECTED_SOURCE = {
    "DISHONEST_JUDGMENT_DEBTOR": {"court"},
    "JUDGMENT_DEBTOR": {"court"},
    "COURT_CASE": {"court"},
    "SERIOUS_ILLEGAL_DISHONEST": {"market_regulation"},
    "ABNORMAL_OPERATION": {"market_regulation"},
    "MAJOR_TAX_VIOLATION": {"tax"},
    "SOCIAL_INSURANCE_ARREARS": {"hrss"},
    "GAMBLING_SUSPECTED": {"police"},
}
ISO_DATE = re.compile(r"\A\d{4}-\d{2}-\d{2}\Z")


def months_later(d: date, months: int) -> date:
    """Independent of the generator's add_months: calendar-based, clamped."""
    total = d.year * 12 + d.month - 1 + months
    year, month = divmod(total, 12)
    month += 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def parse_date(value: object) -> date:
    assert isinstance(value, str)
    assert ISO_DATE.match(value), value
    return date.fromisoformat(value)


@pytest.fixture(scope="module")
def lines() -> list[dict[str, object]]:
    return list(generate(N))


@pytest.fixture(scope="module")
def merchants(lines: list[dict[str, object]]) -> list[dict[str, object]]:
    return [line for line in lines if line["kind"] == "merchant"]


@pytest.fixture(scope="module")
def records(lines: list[dict[str, object]]) -> list[dict[str, object]]:
    return [line for line in lines if line["kind"] == "record"]


def test_same_seed_same_output() -> None:
    assert list(generate(2_000, seed=7)) == list(generate(2_000, seed=7))
    assert list(generate(300)) == list(generate(300, seed=DEFAULT_SEED))


def test_different_seed_different_output() -> None:
    a = [line["uscc"] for line in generate(200, seed=1) if line["kind"] == "merchant"]
    b = [line["uscc"] for line in generate(200, seed=2) if line["kind"] == "merchant"]
    assert len(set(a) & set(b)) < 5


def test_smaller_run_is_a_prefix_of_a_larger_one() -> None:
    small = list(generate(500, seed=3))
    big = list(generate(1_000, seed=3))
    assert big[: len(small)] == small
    assert big[len(small)]["kind"] == "merchant"


def test_counts_and_bounds() -> None:
    assert list(generate(0)) == []
    with pytest.raises(ValueError, match="merchants"):
        list(generate(-1))
    with pytest.raises(ValueError, match="merchants"):
        next(generate(MAX_MERCHANTS + 1))
    assert sum(1 for line in generate(1_234) if line["kind"] == "merchant") == 1_234


def test_records_follow_their_merchant(lines: list[dict[str, object]]) -> None:
    assert lines[0]["kind"] == "merchant"
    current = None
    for line in lines:
        if line["kind"] == "merchant":
            current = line["uscc"]
        else:
            assert line["kind"] == "record"
            assert line["uscc"] == current


def test_every_code_is_valid_unique_and_tianjin(merchants: list[dict[str, object]]) -> None:
    codes = [m["uscc"] for m in merchants]
    assert len(codes) == N
    assert len(set(codes)) == N
    for m in merchants:
        code = m["uscc"]
        assert isinstance(code, str)
        assert uscc_problem_reason(code) is None, code
        assert not organisation_code_warning(code), code
        assert code[2:8] in TIANJIN_DIVISIONS
        assert ENTITY_BY_PREFIX[code[:2]] == m["entity_type"]


def _index_of(body: str, offset: int) -> int:
    """Invert _org_body: fails (ValueError) if the multiplier is not invertible."""
    if body.startswith("MA"):
        n = 0
        for c in body[2:]:
            n = n * 31 + ALPHABET.index(c)
    else:
        n = int(body)
    assert 0 <= n < MAX_MERCHANTS
    return (n - offset) * pow(_ORG_MULTIPLIER, -1, MAX_MERCHANTS) % MAX_MERCHANTS


@given(st.integers(0, MAX_MERCHANTS - 1), st.integers(0, MAX_MERCHANTS - 1), st.booleans())
def test_organisation_bodies_are_a_bijection_of_the_index(
    index: int, offset: int, new_style: bool
) -> None:
    # Uniqueness for any run size, beyond what the 20,000-merchant sample shows:
    # the body determines the index, and old and new styles cannot overlap.
    body = _org_body(index, offset, new_style)
    assert len(body) == 8
    assert body.startswith("MA") is new_style
    assert body[0].isdigit() is not new_style
    assert _index_of(body, offset) == index
    if new_style:
        # Leaves "MA4".."MAY" for the fixed examples.
        assert body[2] in "0123"


def test_merchant_shape(merchants: list[dict[str, object]]) -> None:
    for m in merchants:
        assert set(m) == MERCHANT_KEYS
        assert m["entity_type"] in ENTITY_BY_PREFIX.values()
        assert m["registration_status"] in REGISTRATION_STATUSES
        assert parse_date(m["registered_on"]) < REFERENCE_DATE
        for key in ("name", "legal_representative", "address"):
            value = m[key]
            assert isinstance(value, str)
            assert value.strip() == value
            assert len(value) >= 2
        assert str(m["address"]).startswith("天津市")


def test_record_shape(records: list[dict[str, object]]) -> None:
    assert records
    for r in records:
        assert set(r) == RECORD_KEYS
        assert r["category"] in CATEGORIES
        assert r["severity"] in SEVERITIES
        assert r["status"] in STATUSES
        for key in ("source", "source_record_id", "authority", "document_no", "summary"):
            value = r[key]
            assert isinstance(value, str)
            assert value
            assert "{" not in value, value  # no unfilled template field
        assert str(r["document_no"]).endswith("号")


def test_lines_are_json_round_trippable(lines: list[dict[str, object]]) -> None:
    for line in islice(lines, 2_000):
        assert json.loads(json.dumps(line, ensure_ascii=False)) == line


def test_record_dates_follow_the_severity_periods(
    lines: list[dict[str, object]],
) -> None:
    registered: date | None = None
    for line in lines:
        if line["kind"] == "merchant":
            registered = parse_date(line["registered_on"])
            continue
        severity = str(line["severity"])
        decided = parse_date(line["decided_on"])
        until = parse_date(line["publicity_until"])
        assert registered is not None
        assert registered < decided <= REFERENCE_DATE
        low, high = PERIOD_MONTHS[severity]
        assert months_later(decided, low) <= until <= months_later(decided, high), line
        assert until > decided


def test_statuses_are_consistent_with_dates(records: list[dict[str, object]]) -> None:
    for r in records:
        decided = parse_date(r["decided_on"])
        until = parse_date(r["publicity_until"])
        if r["status"] == "EXPIRED":
            assert until < REFERENCE_DATE
        if r["status"] == "REPAIRED":
            min_months = MIN_MONTHS_BEFORE_REPAIR[str(r["severity"])]
            assert months_later(decided, min_months) <= REFERENCE_DATE
        if r["category"] == "HONOR":
            assert r["status"] in {"ACTIVE", "EXPIRED", "REVOKED"}


def test_sources_and_ids(records: list[dict[str, object]]) -> None:
    keys = [(r["source"], r["source_record_id"]) for r in records]
    assert len(set(keys)) == len(keys)
    for r in records:
        expected = EXPECTED_SOURCE.get(str(r["category"]))
        if expected is not None:
            assert r["source"] in expected, r
        if r["source"] == "court":
            assert re.fullmatch(r"\(\d{4}\)津\d{2,4}(执|民初)\d+号", str(r["document_no"]))
            assert str(r["authority"]).endswith("人民法院")
            assert str(r["document_no"])[1:5] == str(r["decided_on"])[:4]


def test_distribution_is_plausible(
    merchants: list[dict[str, object]], records: list[dict[str, object]]
) -> None:
    types = Counter(m["entity_type"] for m in merchants)
    assert 0.12 < types["INDIVIDUAL_BUSINESS"] / N < 0.18
    assert types.most_common(1)[0][0] == "COMPANY"
    assert set(types) == set(ENTITY_BY_PREFIX.values())

    status = Counter(m["registration_status"] for m in merchants)
    assert 0.01 < status["REVOKED"] / N < 0.03
    assert 0.004 < status["DEREGISTERED"] / N < 0.02

    with_records = len({r["uscc"] for r in records})
    assert 0.25 < with_records / N < 0.35
    per_merchant = Counter(Counter(r["uscc"] for r in records).values())
    assert set(per_merchant) == {1, 2, 3}

    categories = Counter(r["category"] for r in records)
    assert set(categories) == CATEGORIES
    assert categories.most_common(1)[0][0] == "ADMINISTRATIVE_PENALTY"
    statuses = Counter(r["status"] for r in records)
    assert set(statuses) == STATUSES
    assert statuses.most_common(1)[0][0] == "ACTIVE"
    assert set(Counter(r["severity"] for r in records)) == SEVERITIES


def test_add_months() -> None:
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2023, 1, 31), 1) == date(2023, 2, 28)
    assert add_months(date(2026, 12, 15), 1) == date(2027, 1, 15)
    assert add_months(date(2026, 11, 1), -5) == date(2026, 6, 1)
    assert add_months(date(2024, 3, 31), -1) == date(2024, 2, 29)
    assert add_months(date(2026, 8, 31), 36) == date(2029, 8, 31)


@given(st.dates(date(1990, 1, 1), date(2040, 12, 31)), st.integers(-60, 60))
def test_add_months_matches_calendar(d: date, months: int) -> None:
    assert add_months(d, months) == months_later(d, months)


# --- published examples ------------------------------------------------------------


def _published(uscc: str) -> tuple[dict[str, object], list[dict[str, object]]]:
    merchant = [x for x in PUBLISHED_EXAMPLES if x["kind"] == "merchant" and x["uscc"] == uscc]
    assert len(merchant) == 1
    recs = [x for x in PUBLISHED_EXAMPLES if x["kind"] == "record" and x["uscc"] == uscc]
    return merchant[0], recs


def test_published_restricted_example() -> None:
    merchant, recs = _published("91440300708461136T")
    assert merchant["registration_status"] == "ACTIVE"
    assert len(recs) == 1
    (rec,) = recs
    assert rec["category"] == "DISHONEST_JUDGMENT_DEBTOR"
    assert rec["severity"] == "SERIOUS"
    assert rec["status"] == "ACTIVE"
    assert parse_date(rec["decided_on"]) <= REFERENCE_DATE < parse_date(rec["publicity_until"])
    # Still counting today, too, when the demo runs.
    assert parse_date(rec["publicity_until"]) > date(2028, 1, 1)


def test_published_clear_example() -> None:
    merchant, recs = _published("914403001922038216")
    assert merchant["registration_status"] == "ACTIVE"
    assert recs == []


def test_published_examples_are_valid_and_one_is_an_individual_business() -> None:
    merchants = [x for x in PUBLISHED_EXAMPLES if x["kind"] == "merchant"]
    for m in merchants:
        assert uscc_problem_reason(str(m["uscc"])) is None
        assert set(m) == MERCHANT_KEYS

    individual = [m for m in merchants if m["entity_type"] == "INDIVIDUAL_BUSINESS"]
    assert len(individual) == 1
    code = str(individual[0]["uscc"])
    assert code.startswith("92")
    _, recs = _published(code)
    assert [(r["category"], r["severity"], r["status"]) for r in recs] == [
        ("ADMINISTRATIVE_PENALTY", "GENERAL", "ACTIVE")
    ]
    until = parse_date(recs[0]["publicity_until"])
    assert until > REFERENCE_DATE
    decided = parse_date(recs[0]["decided_on"])
    assert months_later(decided, 3) <= until <= months_later(decided, 12)


def test_published_examples_do_not_collide_with_generated(
    merchants: list[dict[str, object]], records: list[dict[str, object]]
) -> None:
    published_codes = {x["uscc"] for x in PUBLISHED_EXAMPLES if x["kind"] == "merchant"}
    assert len(published_codes) == 3
    assert not published_codes & {m["uscc"] for m in merchants}
    published_ids = {
        (x["source"], x["source_record_id"]) for x in PUBLISHED_EXAMPLES if x["kind"] == "record"
    }
    assert not published_ids & {(r["source"], r["source_record_id"]) for r in records}
    for x in PUBLISHED_EXAMPLES:
        if x["kind"] == "record":
            assert set(x) == RECORD_KEYS
            assert x["uscc"] in published_codes


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 50])
def test_demo_registry_holds_exactly_the_merchants_asked_for(n: int) -> None:
    """``demo seed --merchants N`` loads N merchants in all: the published examples first
    (as many as fit), then generated ones; every code valid, each record after its merchant."""
    lines = list(demo_registry(n))
    codes = [str(x["uscc"]) for x in lines if x["kind"] == "merchant"]
    assert len(codes) == len(set(codes)) == n
    assert all(uscc_problem_reason(code) is None for code in codes)
    examples = [str(x["uscc"]) for x in PUBLISHED_EXAMPLES if x["kind"] == "merchant"]
    assert codes[: len(examples)] == examples[:n]
    seen: set[str] = set()
    for line in lines:
        if line["kind"] == "merchant":
            seen.add(str(line["uscc"]))
        else:
            assert line["uscc"] in seen
    assert list(demo_registry(n)) == lines  # deterministic
