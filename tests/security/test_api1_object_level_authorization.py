"""OWASP API1:2023 Broken Object Level Authorization: a platform never sees another
platform's objects, and non-admin clients never reach admin objects by id."""

from __future__ import annotations

import itertools

from fastapi.testclient import TestClient

from tests.fixtures.factories import Factory


def _check(client: TestClient, headers: dict[str, str], uscc: str) -> dict[str, object]:
    response = client.post(
        "/v1/credit-checks", json={"uscc": uscc, "purpose": "ONBOARDING"}, headers=headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_credit_checks_belong_to_their_platform(client: TestClient, factory: Factory) -> None:
    uscc = factory.merchant()
    alice = factory.headers("credit:check credit:detail")
    bob = factory.headers("credit:check credit:detail")
    alice_check = _check(client, alice, uscc)
    bob_check = _check(client, bob, uscc)

    assert client.get(f"/v1/credit-checks/{alice_check['id']}", headers=alice).status_code == 200
    stolen = client.get(f"/v1/credit-checks/{alice_check['id']}", headers=bob)
    assert stolen.status_code == 404
    assert stolen.json()["type"].endswith("/problems/not-found")

    bob_ids = {
        item["id"]
        for item in client.get("/v1/credit-checks?limit=500", headers=bob).json()["items"]
    }
    assert bob_check["id"] in bob_ids
    assert alice_check["id"] not in bob_ids


def test_usage_is_the_callers_own(client: TestClient, factory: Factory) -> None:
    alice_creds, alice = factory.authed("credit:check")
    usage = client.get("/v1/usage", headers=alice)
    assert usage.status_code == 200
    assert usage.json()["client_id"] == alice_creds.client_id


def test_platform_cannot_reach_admin_or_audit_objects(client: TestClient, factory: Factory) -> None:
    platform_creds, platform = factory.authed("credit:check credit:detail credit:pii")
    uscc = factory.merchant()
    record_id = factory.record(uscc)
    for method, path in [
        ("GET", f"/v1/admin/clients/{platform_creds.client_id}"),
        ("PATCH", f"/v1/admin/clients/{platform_creds.client_id}"),
        ("POST", f"/v1/admin/clients/{platform_creds.client_id}/secret"),
        ("GET", f"/v1/admin/records/{record_id}"),
        ("PATCH", f"/v1/admin/records/{record_id}"),
        ("GET", f"/v1/admin/merchants/{uscc}"),
        ("GET", f"/v1/audit/merchants/{uscc}/access-log"),
        ("GET", "/v1/audit/events"),
    ]:
        body = {"status": "suspended"} if method == "PATCH" else None
        response = client.request(method, path, headers=platform, json=body)
        assert response.status_code == 403, (method, path, response.status_code)


def test_ids_are_unguessable(client: TestClient, factory: Factory) -> None:
    """The last 16 characters of an id are random: ids made one right after the other share
    about 1 position in 32 there (a counter or a clock would share nearly all of them)."""
    headers = factory.headers("credit:check")
    uscc = factory.merchant()
    ids = [str(_check(client, headers, uscc)["id"]) for _ in range(3)]
    randoms = [value[-16:] for value in ids]
    assert len(set(randoms)) == len(randoms)
    for first, second in itertools.pairwise(randoms):
        same = sum(a == b for a, b in zip(first, second, strict=True))
        assert same < 8, (first, second)
