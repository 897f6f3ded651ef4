"""The verdict engine: DOMAIN.md's default policy, and properties over any valid policy."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.enums import Verdict
from service.policy.engine import add_months, evaluate, is_counting, publicity_end
from service.policy.rules import CATEGORIES, SEVERITIES, Rules, compile_rules
from tests.service.credit_checks.support import domain_default

TODAY = date(2026, 11, 30)
ALWAYS_RESTRICTED = {
    "DISHONEST_JUDGMENT_DEBTOR",
    "SERIOUS_ILLEGAL_DISHONEST",
    "MAJOR_TAX_VIOLATION",
}
STATUSES = ("ACTIVE", "UNDER_OBJECTION", "REPAIRED", "EXPIRED", "REVOKED")
RANK = {"CLEAR": 0, "CAUTION": 1, "RESTRICTED": 2}


DEFAULT = compile_rules(domain_default())


@dataclass(frozen=True)
class Rec:
    category: str
    severity: str
    status: str = "ACTIVE"
    publicity_until: date | None = TODAY + timedelta(days=30)
    decided_on: date = TODAY - timedelta(days=10)


def verdict_of(records: list[Rec], status: str = "ACTIVE", rules: Rules = DEFAULT) -> Verdict:
    return evaluate(rules, status, records, TODAY)[0]


# ---- the default policy ------------------------------------------------------------------------


def test_no_records_is_clear() -> None:
    assert evaluate(DEFAULT, "ACTIVE", [], TODAY) == (Verdict.CLEAR, [])


@pytest.mark.parametrize("category", sorted(ALWAYS_RESTRICTED))
@pytest.mark.parametrize("severity", SEVERITIES)
def test_listed_categories_restrict_at_any_severity(category: str, severity: str) -> None:
    assert verdict_of([Rec(category, severity)]) is Verdict.RESTRICTED


@pytest.mark.parametrize("category", [c for c in CATEGORIES if c != "HONOR"])
def test_any_serious_negative_record_restricts(category: str) -> None:
    assert verdict_of([Rec(category, "SERIOUS")]) is Verdict.RESTRICTED


@pytest.mark.parametrize(
    "category", [c for c in CATEGORIES if c not in ALWAYS_RESTRICTED and c != "HONOR"]
)
@pytest.mark.parametrize("severity", ["MINOR", "GENERAL"])
def test_other_negative_records_caution(category: str, severity: str) -> None:
    assert verdict_of([Rec(category, severity)]) is Verdict.CAUTION


@pytest.mark.parametrize("severity", SEVERITIES)
def test_honor_is_clear_and_listed_as_a_reason(severity: str) -> None:
    verdict, reasons = evaluate(DEFAULT, "ACTIVE", [Rec("HONOR", severity)], TODAY)
    assert verdict is Verdict.CLEAR
    assert reasons == [{"category": "HONOR", "severity": severity, "count": 1, "verdict": "CLEAR"}]


@pytest.mark.parametrize("status", ["REVOKED", "DEREGISTERED"])
def test_revoked_or_deregistered_merchants_are_restricted_whatever_their_records(
    status: str,
) -> None:
    assert verdict_of([], status) is Verdict.RESTRICTED
    assert verdict_of([Rec("HONOR", "GENERAL")], status) is Verdict.RESTRICTED


@pytest.mark.parametrize("status", ["REPAIRED", "EXPIRED", "REVOKED"])
def test_records_that_stopped_counting_are_ignored(status: str) -> None:
    assert evaluate(
        DEFAULT, "ACTIVE", [Rec("DISHONEST_JUDGMENT_DEBTOR", "SERIOUS", status)], TODAY
    ) == (
        Verdict.CLEAR,
        [],
    )


def test_records_under_objection_still_count() -> None:
    assert verdict_of([Rec("JUDGMENT_DEBTOR", "GENERAL", "UNDER_OBJECTION")]) is Verdict.CAUTION


def test_publicity_period_bounds() -> None:
    assert (
        verdict_of([Rec("COURT_CASE", "SERIOUS", publicity_until=TODAY - timedelta(days=1))])
        is Verdict.CLEAR
    )
    assert verdict_of([Rec("COURT_CASE", "SERIOUS", publicity_until=TODAY)]) is Verdict.RESTRICTED
    assert verdict_of([Rec("COURT_CASE", "SERIOUS", publicity_until=None)]) is Verdict.RESTRICTED


def test_reasons_group_counts_worst_first() -> None:
    records = [
        Rec("HONOR", "GENERAL"),
        Rec("ADMINISTRATIVE_PENALTY", "GENERAL"),
        Rec("ADMINISTRATIVE_PENALTY", "GENERAL"),
        Rec("ADMINISTRATIVE_PENALTY", "MINOR"),
        Rec("JUDGMENT_DEBTOR", "SERIOUS"),
        Rec("ABNORMAL_OPERATION", "MINOR", "REPAIRED"),
    ]
    verdict, reasons = evaluate(DEFAULT, "ACTIVE", records, TODAY)
    assert verdict is Verdict.RESTRICTED
    assert [(r["category"], r["severity"], r["count"], r["verdict"]) for r in reasons] == [
        ("JUDGMENT_DEBTOR", "SERIOUS", 1, "RESTRICTED"),
        ("ADMINISTRATIVE_PENALTY", "GENERAL", 2, "CAUTION"),
        ("ADMINISTRATIVE_PENALTY", "MINOR", 1, "CAUTION"),
        ("HONOR", "GENERAL", 1, "CLEAR"),
    ]
    # The order is a function of the set, not of the input order.
    assert evaluate(DEFAULT, "ACTIVE", list(reversed(records)), TODAY)[1] == reasons


def test_unknown_cell_is_caution_not_ignored() -> None:
    assert verdict_of([Rec("SOMETHING_NEW", "GENERAL")]) is Verdict.CAUTION


def test_is_counting() -> None:
    assert is_counting(Rec("HONOR", "MINOR", "UNDER_OBJECTION", None), TODAY)
    assert not is_counting(Rec("HONOR", "MINOR", "EXPIRED", None), TODAY)


@pytest.mark.parametrize(
    ("severity", "last_day"),
    [
        ("MINOR", date(2026, 3, 31)),
        ("GENERAL", date(2026, 12, 31)),
        ("SERIOUS", date(2028, 12, 31)),
    ],
)
def test_a_negative_record_without_publicity_until_counts_until_its_longest_period(
    severity: str, last_day: date
) -> None:
    """DOMAIN.md: published at most 3 months (MINOR), 1 year (GENERAL), 3 years (SERIOUS)
    from the decision date, then publication ends on its own."""
    record = Rec(
        "ADMINISTRATIVE_PENALTY", severity, publicity_until=None, decided_on=date(2025, 12, 31)
    )
    assert publicity_end(record) == last_day
    assert is_counting(record, last_day)
    assert not is_counting(record, last_day + timedelta(days=1))
    assert verdict_of([record]) is (
        Verdict.CLEAR
        if last_day < TODAY
        else Verdict.RESTRICTED
        if severity == "SERIOUS"
        else Verdict.CAUTION
    )


def test_a_given_publicity_until_wins_over_the_longest_period() -> None:
    record = Rec("COURT_CASE", "MINOR", publicity_until=TODAY, decided_on=date(2020, 1, 1))
    assert is_counting(record, TODAY)


def test_honor_without_publicity_until_has_no_end() -> None:
    assert (
        publicity_end(Rec("HONOR", "MINOR", publicity_until=None, decided_on=date(2001, 1, 1)))
        is None
    )


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2026, 1, 31), 1, date(2026, 2, 28)),
        (date(2024, 1, 31), 1, date(2024, 2, 29)),
        (date(2026, 11, 30), 3, date(2027, 2, 28)),
        (date(2026, 10, 15), 3, date(2027, 1, 15)),
        (date(2026, 2, 28), 36, date(2029, 2, 28)),
    ],
)
def test_add_months_clamps_to_the_end_of_a_shorter_month(
    day: date, months: int, expected: date
) -> None:
    assert add_months(day, months) == expected


# ---- properties over any valid policy ----------------------------------------------------------

verdicts = st.sampled_from(["CLEAR", "CAUTION", "RESTRICTED"])


@st.composite
def policies(draw: st.DrawFn) -> Rules:
    matrix = {
        c: {s: ("CLEAR" if c == "HONOR" else draw(verdicts)) for s in SEVERITIES}
        for c in CATEGORIES
    }
    statuses = {
        "ACTIVE": draw(st.none() | verdicts),
        "REVOKED": draw(verdicts),
        "DEREGISTERED": draw(verdicts),
    }
    return compile_rules({"matrix": matrix, "registration_status": statuses})


dates = st.one_of(st.none(), st.dates(TODAY - timedelta(days=400), TODAY + timedelta(days=400)))
decisions = st.dates(TODAY - timedelta(days=1500), TODAY)
records = st.builds(
    Rec,
    category=st.sampled_from(CATEGORIES),
    severity=st.sampled_from(SEVERITIES),
    status=st.sampled_from(STATUSES),
    publicity_until=dates,
    decided_on=decisions,
)
negative_counting = st.builds(
    Rec,
    category=st.sampled_from([c for c in CATEGORIES if c != "HONOR"]),
    severity=st.sampled_from(SEVERITIES),
    status=st.sampled_from(["ACTIVE", "UNDER_OBJECTION"]),
    publicity_until=st.one_of(st.none(), st.dates(TODAY, TODAY + timedelta(days=400))),
)
honor = st.builds(
    Rec,
    category=st.just("HONOR"),
    severity=st.sampled_from(SEVERITIES),
    status=st.sampled_from(STATUSES),
    publicity_until=dates,
)
not_counting = st.one_of(
    st.builds(
        Rec,
        category=st.sampled_from(CATEGORIES),
        severity=st.sampled_from(SEVERITIES),
        status=st.sampled_from(["REPAIRED", "EXPIRED", "REVOKED"]),
        publicity_until=dates,
    ),
    st.builds(
        Rec,
        category=st.sampled_from(CATEGORIES),
        severity=st.sampled_from(SEVERITIES),
        status=st.sampled_from(["ACTIVE", "UNDER_OBJECTION"]),
        publicity_until=st.dates(TODAY - timedelta(days=400), TODAY - timedelta(days=1)),
    ),
    st.builds(  # no publicity_until, decided longer ago than any severity is published
        Rec,
        category=st.sampled_from([c for c in CATEGORIES if c != "HONOR"]),
        severity=st.sampled_from(SEVERITIES),
        status=st.sampled_from(["ACTIVE", "UNDER_OBJECTION"]),
        publicity_until=st.none(),
        decided_on=st.dates(TODAY - timedelta(days=3000), TODAY - timedelta(days=1100)),
    ),
)
reg_status = st.sampled_from(["ACTIVE", "REVOKED", "DEREGISTERED"])


@settings(deadline=None)  # no timing in tests
@given(policies(), reg_status, st.lists(records, max_size=8), negative_counting)
def test_adding_a_counting_negative_record_never_improves_the_verdict(
    rules: Rules, status: str, base: list[Rec], extra: Rec
) -> None:
    before = verdict_of(base, status, rules)
    after = verdict_of([*base, extra], status, rules)
    assert RANK[after] >= RANK[before]
    assert RANK[after] >= rules.cells[(extra.category, extra.severity)]


@settings(deadline=None)  # no timing in tests
@given(policies(), reg_status, st.lists(records, max_size=8), honor)
def test_an_honor_record_never_worsens_the_verdict(
    rules: Rules, status: str, base: list[Rec], extra: Rec
) -> None:
    assert verdict_of([*base, extra], status, rules) == verdict_of(base, status, rules)


@settings(deadline=None)  # no timing in tests
@given(policies(), reg_status, st.lists(records, max_size=8), not_counting)
def test_records_that_do_not_count_change_nothing(
    rules: Rules, status: str, base: list[Rec], extra: Rec
) -> None:
    assert evaluate(rules, status, [*base, extra], TODAY) == evaluate(rules, status, base, TODAY)


def _last_published_day(record: Rec) -> date | None:
    if record.publicity_until is not None or record.category == "HONOR":
        return record.publicity_until
    months = {"MINOR": 3, "GENERAL": 12, "SERIOUS": 36}[record.severity]
    year, month0 = divmod(record.decided_on.month - 1 + months, 12)
    year += record.decided_on.year
    last_day = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(record.decided_on.day, last_day))


@settings(deadline=None)  # no timing in tests
@given(policies(), reg_status, st.lists(records, max_size=12))
def test_verdict_is_the_worst_rule_that_applies(rules: Rules, status: str, recs: list[Rec]) -> None:
    """An oracle written differently from the engine."""
    ranks = [2 if status in ("REVOKED", "DEREGISTERED") else rules.statuses[status] or 0]
    ranks += [
        rules.cells[(r.category, r.severity)]
        for r in recs
        if r.status in ("ACTIVE", "UNDER_OBJECTION")
        and (_last_published_day(r) is None or _last_published_day(r) >= TODAY)  # type: ignore[operator]
    ]
    verdict, reasons = evaluate(rules, status, recs, TODAY)
    assert RANK[verdict] == max(ranks)
    assert sum(int(r["count"]) for r in reasons) == len(ranks) - 1


def test_positive_information_never_worsens_even_under_a_corrupt_policy() -> None:
    """Defence in depth: validation keeps HONOR CLEAR, and the engine does not rely on it."""
    corrupt = Rules(cells={**DEFAULT.cells, ("HONOR", "GENERAL"): 2}, statuses=DEFAULT.statuses)
    verdict, reasons = evaluate(corrupt, "ACTIVE", [Rec("HONOR", "GENERAL")], TODAY)
    assert verdict is Verdict.CLEAR
    assert reasons[0]["verdict"] == "CLEAR"
