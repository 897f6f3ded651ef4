"""``GET|PUT /v1/admin/policy``: complete validation, append-only versions, audit, effect."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.db.base import utcnow
from service.models import AuditEvent, VerdictPolicy
from service.policy.cache import policy_cache
from tests.fixtures.factories import Factory
from tests.service.credit_checks.support import check, domain_default, platform

PATH = "/v1/admin/policy"


@pytest.fixture
def admin(factory: Factory) -> Iterator[dict[str, str]]:
    """An admin:data client; whatever a test does to the policy, the default is restored."""
    headers = factory.headers("admin:data")
    yield headers
    current = factory.http.get(PATH, headers=headers).json()
    default = domain_default()
    if {k: current[k] for k in default} != default:
        assert factory.http.put(PATH, json=default, headers=headers).status_code == 200


def _put(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> Any:
    return client.put(PATH, json=body, headers=headers)


def test_needs_admin_data(client: TestClient, factory: Factory) -> None:
    assert client.get(PATH).status_code == 401
    assert client.get(PATH, headers=factory.headers("credit:check")).status_code == 403
    assert (
        client.put(
            PATH, json=domain_default(), headers=factory.headers("admin:clients")
        ).status_code
        == 403
    )


def test_get_returns_the_version_in_force(
    client: TestClient, admin: dict[str, str], db: Any
) -> None:
    body = client.get(PATH, headers=admin).json()
    assert set(body) == {"version", "created_at", "created_by", "matrix", "registration_status"}
    newest = db.scalar(select(VerdictPolicy).order_by(VerdictPolicy.version.desc()).limit(1))
    assert body["version"] == newest.version
    # The seeded version 1 is DOMAIN.md's default, and so is what tests leave in force.
    assert db.get(VerdictPolicy, 1).rules == domain_default()
    assert {k: body[k] for k in ("matrix", "registration_status")} == domain_default()


def test_put_appends_a_version_and_keeps_the_old_ones(
    client: TestClient, factory: Factory, admin: dict[str, str], db: Any
) -> None:
    before = client.get(PATH, headers=admin).json()
    changed = copy.deepcopy(domain_default())
    changed["matrix"]["COURT_CASE"]["MINOR"] = "CLEAR"
    response = _put(client, admin, changed)
    assert response.status_code == 200, response.text
    after = response.json()
    assert after["version"] == before["version"] + 1
    assert after["matrix"]["COURT_CASE"]["MINOR"] == "CLEAR"
    assert client.get(PATH, headers=admin).json() == after
    old = db.get(VerdictPolicy, before["version"])
    assert old is not None
    assert old.rules["matrix"]["COURT_CASE"]["MINOR"] == "CAUTION"
    event = db.scalar(
        select(AuditEvent).where(
            AuditEvent.action == "policy.update", AuditEvent.target_id == str(after["version"])
        )
    )
    assert event is not None
    assert event.status == 200
    assert event.details["before"] == {"version": before["version"]}
    assert event.details["after"] == {"version": after["version"]}
    assert event.details["changes"] == [
        {"rule": "COURT_CASE.MINOR", "from": "CAUTION", "to": "CLEAR"}
    ]
    assert after["created_by"] == event.actor_client_id


def test_incomplete_policy_is_422_with_the_missing_cells(
    client: TestClient, admin: dict[str, str]
) -> None:
    version = client.get(PATH, headers=admin).json()["version"]
    body = copy.deepcopy(domain_default())
    del body["matrix"]["COURT_CASE"]["MINOR"]
    del body["matrix"]["HONOR"]
    response = _put(client, admin, body)
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"].endswith("/problems/validation-failed")
    fields = {e["field"] for e in problem["errors"]}
    assert fields == {"matrix.COURT_CASE.MINOR", "matrix.HONOR"}
    assert client.get(PATH, headers=admin).json()["version"] == version


def test_honor_not_clear_is_422(client: TestClient, admin: dict[str, str]) -> None:
    body = copy.deepcopy(domain_default())
    body["matrix"]["HONOR"]["GENERAL"] = "CAUTION"
    response = _put(client, admin, body)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["matrix.HONOR.GENERAL"]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b["registration_status"].pop("REVOKED"),
        lambda b: b["registration_status"].update(DEREGISTERED=None),
        lambda b: b["matrix"]["COURT_CASE"].update(MINOR="MAYBE"),
        lambda b: b["matrix"].update(NEW_THING={"MINOR": "CLEAR"}),
        lambda b: b.update(comment="not a member of the policy"),
    ],
    ids=["no-revoked", "null-deregistered", "bad-verdict", "unknown-category", "unknown-field"],
)
def test_other_invalid_policies_are_422(
    client: TestClient, admin: dict[str, str], mutate: Any
) -> None:
    body = copy.deepcopy(domain_default())
    mutate(body)
    assert _put(client, admin, body).status_code == 422


def test_checks_use_the_new_version_at_once(
    client: TestClient, factory: Factory, admin: dict[str, str]
) -> None:
    uscc = factory.merchant()
    factory.record(uscc, category="ADMINISTRATIVE_PENALTY", severity="GENERAL")
    headers = platform(factory)
    first = check(client, headers, uscc).json()
    assert first["verdict"] == "CAUTION"
    changed = copy.deepcopy(domain_default())
    changed["matrix"]["ADMINISTRATIVE_PENALTY"]["GENERAL"] = "RESTRICTED"
    version = _put(client, admin, changed).json()["version"]
    second = check(client, headers, uscc).json()
    assert second["verdict"] == "RESTRICTED"
    assert second["policy_version"] == str(version)
    assert second["reasons"][0]["verdict"] == "RESTRICTED"


def test_active_may_be_left_out_and_defaults_to_no_rule(
    client: TestClient, admin: dict[str, str]
) -> None:
    body = domain_default()
    body["registration_status"] = {"REVOKED": "RESTRICTED", "DEREGISTERED": "RESTRICTED"}
    response = _put(client, admin, body)
    assert response.status_code == 200, response.text
    assert response.json()["registration_status"]["ACTIVE"] is None


@pytest.mark.parametrize("status", ["REVOKED", "DEREGISTERED"])
@pytest.mark.parametrize("verdict", ["CLEAR", "CAUTION"])
def test_revoked_and_deregistered_can_only_be_restricted(
    client: TestClient, admin: dict[str, str], status: str, verdict: str
) -> None:
    before = client.get(PATH, headers=admin).json()["version"]
    body = domain_default()
    body["registration_status"][status] = verdict
    response = _put(client, admin, body)
    assert response.status_code == 422
    assert f"registration_status.{status}" in [e["field"] for e in response.json()["errors"]]
    assert client.get(PATH, headers=admin).json()["version"] == before


def test_the_document_get_returned_can_be_put_back_edited(
    client: TestClient, admin: dict[str, str]
) -> None:
    document = client.get(PATH, headers=admin).json()
    document["matrix"]["COURT_CASE"]["MINOR"] = "CLEAR"
    response = _put(client, admin, document)
    assert response.status_code == 200, response.text
    after = response.json()
    assert after["version"] == document["version"] + 1
    assert after["matrix"]["COURT_CASE"]["MINOR"] == "CLEAR"
    assert after["created_at"] != document["created_at"]  # read-only members: ignored


def test_read_only_members_are_ignored_not_stored(
    client: TestClient, admin: dict[str, str]
) -> None:
    document = client.get(PATH, headers=admin).json()
    document.update(created_by="someone-else", created_at="2001-01-01T00:00:00+00:00")
    response = _put(client, admin, document)
    assert response.status_code == 200, response.text
    assert response.json()["created_by"] != "someone-else"
    assert not response.json()["created_at"].startswith("2001")


def test_a_change_made_from_an_older_version_is_409_and_changes_nothing(
    client: TestClient, admin: dict[str, str]
) -> None:
    first = client.get(PATH, headers=admin).json()
    other = copy.deepcopy(first)
    other["matrix"]["COURT_CASE"]["GENERAL"] = "CLEAR"
    assert _put(client, admin, other).status_code == 200  # another administrator's change
    stale = copy.deepcopy(first)
    stale["matrix"]["COURT_CASE"]["MINOR"] = "CLEAR"
    response = _put(client, admin, stale)
    assert response.status_code == 409
    assert response.json()["current_version"] == first["version"] + 1
    now = client.get(PATH, headers=admin).json()
    assert now["version"] == first["version"] + 1
    assert now["matrix"]["COURT_CASE"]["MINOR"] == "CAUTION"  # not silently undone either
    assert now["matrix"]["COURT_CASE"]["GENERAL"] == "CLEAR"


def test_a_deregistered_merchant_is_restricted_under_a_stored_policy_that_says_otherwise(
    client: TestClient, factory: Factory, admin: dict[str, str], db: Any
) -> None:
    """Policies stored before the rule was enforced on PUT still compile; the engine
    restricts a deregistered merchant whatever they say."""
    current = client.get(PATH, headers=admin).json()["version"]
    rules = domain_default()
    rules["registration_status"]["DEREGISTERED"] = "CLEAR"
    db.add(
        VerdictPolicy(version=current + 1, rules=rules, created_at=utcnow(), created_by="legacy")
    )
    db.commit()
    policy_cache(factory.app.state).invalidate()
    uscc = factory.merchant(registration_status="DEREGISTERED")
    response = check(client, platform(factory), uscc)
    assert response.status_code == 201, response.text
    assert response.json()["policy_version"] == str(current + 1)
    assert response.json()["verdict"] == "RESTRICTED"
