"""OWASP API2:2023 Broken Authentication: credentials fail the same way whatever is wrong,
tokens are short-lived and only accepted from the Authorization header."""

from __future__ import annotations

import base64

from fastapi.testclient import TestClient
from sqlalchemy import select

from service.models import AuditEvent
from tests.fixtures.factories import Factory

GRANT = {"grant_type": "client_credentials"}


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def test_unknown_client_and_wrong_secret_are_indistinguishable(
    client: TestClient, factory: Factory
) -> None:
    creds = factory.client()
    wrong = client.post("/oauth/token", data=GRANT, headers=_basic(creds.client_id, "css_wrong"))
    unknown = client.post(
        "/oauth/token", data=GRANT, headers=_basic("cs_000000000000000000000000", "css_wrong")
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["error"] == unknown.json()["error"] == "invalid_client"


def test_secret_rotation_invalidates_the_old_secret(client: TestClient, factory: Factory) -> None:
    creds = factory.client()
    admin = factory.headers("admin:clients")
    rotated = client.post(f"/v1/admin/clients/{creds.client_id}/secret", headers=admin)
    assert rotated.status_code == 200
    new_secret = rotated.json()["client_secret"]
    assert client.post("/oauth/token", data=GRANT, headers=creds.basic()).status_code == 401
    assert (
        client.post(
            "/oauth/token", data=GRANT, headers=_basic(creds.client_id, new_secret)
        ).status_code
        == 200
    )


def test_a_rotation_sets_no_secret_of_the_callers(client: TestClient, factory: Factory) -> None:
    """A body that tries to choose the secret, or is not the empty object, is 422 and rotates
    nothing: the old secret still works."""
    creds = factory.client()
    admin = factory.headers("admin:clients")
    path = f"/v1/admin/clients/{creds.client_id}/secret"
    for refused in (
        client.post(path, json={"client_secret": "css_mine"}, headers=admin),
        client.post(path, json=[1], headers=admin),
        client.post(
            path, content=b"not json", headers={**admin, "Content-Type": "application/json"}
        ),
    ):
        assert refused.status_code == 422, refused.text
    assert client.post("/oauth/token", data=GRANT, headers=creds.basic()).status_code == 200
    empty = client.post(path, json={}, headers=admin)
    assert empty.status_code == 200
    assert client.post("/oauth/token", data=GRANT, headers=creds.basic()).status_code == 401


def test_tokens_are_short_lived_and_header_only(client: TestClient, factory: Factory) -> None:
    creds = factory.client("credit:check")
    body = client.post("/oauth/token", data=GRANT, headers=creds.basic()).json()
    assert body["expires_in"] <= 900
    token = body["access_token"]
    assert client.get(f"/v1/usage?access_token={token}").status_code == 401
    in_body = client.post(
        "/v1/credit-checks",
        json={"uscc": "91440300708461136T", "purpose": "ONBOARDING", "access_token": token},
    )
    assert in_body.status_code == 401
    assert client.get("/v1/usage", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_a_body_that_is_not_json_is_refused_after_authentication(
    client: TestClient, factory: Factory
) -> None:
    """FastAPI parses a body before the route's dependencies run; the token and scope checks
    still come first (401, 403), and an authorised caller's 422 names it in the trail."""
    json_type = {"Content-Type": "application/json"}
    path = "/v1/admin/policy"
    anonymous = client.put(path, content=b"{not json", headers=json_type)
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    wrong_scope = {**factory.headers("credit:check"), **json_type}
    refused = client.put(path, content=b"{not json", headers=wrong_scope)
    assert refused.status_code == 403, refused.text
    creds, admin = factory.authed("admin:data")
    rid = "test-not-json-" + creds.client_id
    malformed = client.put(
        path,
        content=b"{not json",
        headers={**admin, "Content-Type": "application/json", "X-Request-ID": rid},
    )
    assert malformed.status_code == 422
    assert malformed.json()["type"].endswith("/problems/validation-failed")
    with factory.sessionmaker() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.request_id == rid)).one()
    assert event.actor_client_id == creds.client_id
