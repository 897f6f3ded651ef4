"""Reading checks back: exactly as issued, only the client's own (BOLA), paginated."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from schemas.credit_checks import CreditCheckPage
from service.models import AuditEvent
from tests.fixtures.factories import Factory
from tests.service.credit_checks.support import check, domain_default, platform


def test_read_back_byte_identical_after_data_and_policy_change(
    client: TestClient, factory: Factory
) -> None:
    uscc = factory.merchant()
    factory.record(uscc, category="COURT_CASE", severity="MINOR")
    headers = platform(factory, "credit:check credit:detail")
    issued = check(client, headers, uscc)
    assert issued.json()["verdict"] == "CAUTION"
    admin = factory.headers("admin:data")
    changed = copy.deepcopy(domain_default())
    changed["matrix"]["COURT_CASE"]["MINOR"] = "CLEAR"
    assert client.put("/v1/admin/policy", json=changed, headers=admin).status_code == 200
    try:
        factory.record(uscc, category="DISHONEST_JUDGMENT_DEBTOR", severity="SERIOUS")
        assert check(client, headers, uscc).json()["verdict"] == "RESTRICTED"
        again = client.get(issued.headers["location"], headers=headers)
        assert again.status_code == 200
        assert again.headers["content-type"] == "application/json"
        assert again.content == issued.content
    finally:
        assert (
            client.put("/v1/admin/policy", json=domain_default(), headers=admin).status_code == 200
        )


def test_another_clients_check_is_404_and_lists_are_private(
    client: TestClient, factory: Factory, db: Any
) -> None:
    uscc = factory.merchant()
    alice, bob = platform(factory), platform(factory)
    mine = check(client, alice, uscc).json()["id"]
    theirs = check(client, bob, uscc).json()["id"]
    assert client.get(f"/v1/credit-checks/{mine}", headers=alice).status_code == 200
    stolen = client.get(f"/v1/credit-checks/{theirs}", headers=alice)
    assert stolen.status_code == 404
    assert stolen.json()["type"].endswith("/problems/not-found")
    assert uscc not in stolen.text
    assert [c["id"] for c in client.get("/v1/credit-checks", headers=alice).json()["items"]] == [
        mine
    ]
    assert [c["id"] for c in client.get("/v1/credit-checks", headers=bob).json()["items"]] == [
        theirs
    ]
    read = db.scalar(
        select(AuditEvent).where(
            AuditEvent.action == "credit_check.read", AuditEvent.target_id == mine
        )
    )
    assert (read.uscc, read.purpose, read.status) == (uscc, "ONBOARDING", 200)


@pytest.mark.parametrize("check_id", ["chk_nope", "x" * 64, "chk_01m8m59dpy4hk21nb3r6pc32nz"])
def test_unknown_ids_are_404(client: TestClient, factory: Factory, check_id: str) -> None:
    assert client.get(f"/v1/credit-checks/{check_id}", headers=platform(factory)).status_code == 404


def test_list_is_newest_first_and_paginated(client: TestClient, factory: Factory) -> None:
    uscc = factory.merchant()
    headers = platform(factory)
    ids = [check(client, headers, uscc).json()["id"] for _ in range(5)]
    # Ids are time-ordered to the millisecond (ties are in random order).
    newest_first = sorted(ids, reverse=True)
    assert newest_first[0][:14] == ids[-1][:14]
    first = client.get("/v1/credit-checks?limit=2", headers=headers)
    assert first.status_code == 200
    page = CreditCheckPage.model_validate(first.json())
    assert [c.id for c in page.items] == newest_first[:2]
    seen = [c.id for c in page.items]
    cursor = page.next_cursor
    while cursor:
        nxt = client.get(f"/v1/credit-checks?limit=2&cursor={cursor}", headers=headers).json()
        seen += [c["id"] for c in nxt["items"]]
        cursor = nxt["next_cursor"]
    assert seen == newest_first
    full = client.get("/v1/credit-checks", headers=headers).json()
    assert full["next_cursor"] is None
    one = client.get(f"/v1/credit-checks/{ids[0]}", headers=headers).json()
    assert full["items"][-1] == one


@pytest.mark.parametrize("query", ["limit=501", "limit=0", "limit=x", "cursor=%21%21%21"])
def test_bad_list_parameters_are_422(client: TestClient, factory: Factory, query: str) -> None:
    response = client.get(f"/v1/credit-checks?{query}", headers=platform(factory))
    assert response.status_code == 422
    assert response.json()["type"].endswith("/problems/validation-failed")


def test_reading_needs_credit_check(client: TestClient, factory: Factory) -> None:
    assert client.get("/v1/credit-checks").status_code == 401
    assert client.get("/v1/credit-checks", headers=factory.headers("audit:read")).status_code == 403
