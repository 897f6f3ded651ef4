"""Validating a policy before it is stored or used."""

from __future__ import annotations

import copy

import pytest

from service.policy.rules import compile_rules, rule_errors, split_storage_form, storage_form
from tests.service.credit_checks.support import domain_default


def _errors(raw: dict[str, object]) -> list[tuple[str, str]]:
    matrix, statuses = split_storage_form(raw)
    return rule_errors(matrix, statuses)


def test_the_default_is_valid_and_round_trips() -> None:
    raw = domain_default()
    assert _errors(raw) == []
    matrix, statuses = split_storage_form(raw)
    assert storage_form(matrix, statuses) == raw


def test_missing_cells_and_categories_are_named() -> None:
    raw = copy.deepcopy(domain_default())
    del raw["matrix"]["COURT_CASE"]["MINOR"]
    del raw["matrix"]["GAMBLING_SUSPECTED"]
    assert _errors(raw) == [
        ("matrix.COURT_CASE.MINOR", "Missing verdict"),
        ("matrix.GAMBLING_SUSPECTED", "Missing category"),
    ]


def test_honor_must_be_clear() -> None:
    raw = copy.deepcopy(domain_default())
    raw["matrix"]["HONOR"]["SERIOUS"] = "CAUTION"
    assert _errors(raw) == [("matrix.HONOR.SERIOUS", "Positive information must be CLEAR")]


@pytest.mark.parametrize("status", ["REVOKED", "DEREGISTERED"])
def test_revoked_and_deregistered_need_a_verdict(status: str) -> None:
    raw = copy.deepcopy(domain_default())
    del raw["registration_status"][status]
    assert _errors(raw) == [(f"registration_status.{status}", "A verdict is required")]
    raw["registration_status"][status] = None
    assert _errors(raw) == [(f"registration_status.{status}", "A verdict is required")]


def test_unknown_names_and_verdicts() -> None:
    raw = copy.deepcopy(domain_default())
    raw["matrix"]["NEW_THING"] = {"MINOR": "CLEAR"}
    raw["matrix"]["COURT_CASE"]["HUGE"] = "CLEAR"
    raw["matrix"]["COURT_CASE"]["MINOR"] = "BANNED"
    raw["registration_status"]["SUSPENDED"] = "CLEAR"
    assert sorted(_errors(raw)) == [
        ("matrix.COURT_CASE.HUGE", "Unknown severity"),
        ("matrix.COURT_CASE.MINOR", "Unknown verdict"),
        ("matrix.NEW_THING", "Unknown category"),
        ("registration_status.SUSPENDED", "Unknown registration status"),
    ]


def test_compile_refuses_an_invalid_policy() -> None:
    raw = copy.deepcopy(domain_default())
    raw["matrix"]["HONOR"]["MINOR"] = "RESTRICTED"
    with pytest.raises(ValueError, match=r"HONOR\.MINOR"):
        compile_rules(raw)
    with pytest.raises(ValueError, match="matrix"):
        compile_rules({"registration_status": {}})
