"""Bearer tokens at the resource: RFC 6750 refusals, revocation, suspension, rotation."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy.exc import OperationalError

from auth.keys import PUBLISHED_SECONDS, REFRESH_SECONDS, KeyStore
from tests.fixtures.factories import Factory
from tests.fixtures.routes import api_routes

ISSUER = "http://testserver"
PROTECTED = "/v1/admin/clients?limit=1"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _claims(client_id: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": ISSUER,
        "sub": client_id,
        "client_id": client_id,
        "iat": now,
        "exp": now + 300,
        "jti": f"j{now}{client_id}",
        "scope": "admin:clients",
    }
    claims.update(overrides)
    return claims


def _signed_by_server(client: TestClient, claims: dict[str, Any], typ: str = "at+jwt") -> str:
    signer = client.app.state.key_store.view().token_signer  # type: ignore[attr-defined]
    return jwt.encode({"alg": "ES256", "typ": typ, "kid": signer.kid}, claims, signer)


def _assert_invalid_token(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_valid_token_passes(client: TestClient, factory: Factory) -> None:
    creds = factory.client("admin:clients")
    assert (
        client.get(
            PROTECTED, headers=_bearer(_signed_by_server(client, _claims(creds.client_id)))
        ).status_code
        == 200
    )


def test_missing_and_non_bearer(client: TestClient) -> None:
    missing = client.get(PROTECTED)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="creditshare"'
    basic = client.get(PROTECTED, headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert basic.status_code == 401


def test_token_in_query_string_is_ignored(client: TestClient, factory: Factory) -> None:
    token = factory.token(factory.client("admin:clients"))
    assert client.get(f"{PROTECTED}&access_token={token}").status_code == 401


def test_forged_signature(client: TestClient, factory: Factory) -> None:
    creds = factory.client("admin:clients")
    real_kid = client.app.state.key_store.view().token_signer.kid  # type: ignore[attr-defined]
    forger = ECKey.generate_key("P-256", parameters={"kid": real_kid}, private=True)
    forged = jwt.encode(
        {"alg": "ES256", "typ": "at+jwt", "kid": real_kid}, _claims(creds.client_id), forger
    )
    _assert_invalid_token(client.get(PROTECTED, headers=_bearer(forged)))


def test_alg_none_token(client: TestClient, factory: Factory) -> None:
    creds = factory.client("admin:clients")

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    unsigned = f"{b64({'alg': 'none', 'typ': 'at+jwt'})}.{b64(_claims(creds.client_id))}."
    _assert_invalid_token(client.get(PROTECTED, headers=_bearer(unsigned)))


def test_expired_wrong_audience_wrong_issuer_wrong_typ(
    client: TestClient, factory: Factory
) -> None:
    creds = factory.client("admin:clients")
    now = int(time.time())
    for claims in (
        _claims(creds.client_id, iat=now - 1000, exp=now - 100),
        _claims(creds.client_id, aud="https://other.example"),
        _claims(creds.client_id, iss="https://other.example"),
        _claims(creds.client_id, sub="cs_someoneelse"),
    ):
        _assert_invalid_token(
            client.get(PROTECTED, headers=_bearer(_signed_by_server(client, claims)))
        )
    id_token_like = _signed_by_server(client, _claims(creds.client_id), typ="JWT")
    _assert_invalid_token(client.get(PROTECTED, headers=_bearer(id_token_like)))
    _assert_invalid_token(client.get(PROTECTED, headers=_bearer("not.a.jwt")))


def test_a_token_is_refused_from_its_exp_on_without_leeway(
    client: TestClient, factory: Factory
) -> None:
    """Expired means expired (RFC 7519 4.1.4): a token whose ``exp`` passed a second ago is
    401, even though ``iat`` is allowed a few seconds of skew; introspection agrees."""
    creds = factory.client("admin:clients")
    now = int(time.time())
    token = _signed_by_server(client, _claims(creds.client_id, iat=now - 60, exp=now - 1))
    _assert_invalid_token(client.get(PROTECTED, headers=_bearer(token)))
    introspected = client.post("/oauth/introspect", data={"token": token}, headers=creds.basic())
    assert introspected.json() == {"active": False}


@pytest.mark.parametrize("hint", ["access_token", "refresh_token", "no_such_type"])
def test_a_token_type_hint_is_only_a_hint(client: TestClient, factory: Factory, hint: str) -> None:
    """RFC 7009 2.1 and RFC 7662 2.1: a hint the server does not know is ignored; the token
    is introspected and revoked all the same."""
    creds = factory.client("admin:clients")
    token = factory.token(creds)
    form = {"token": token, "token_type_hint": hint}
    introspected = client.post("/oauth/introspect", data=form, headers=creds.basic())
    assert introspected.status_code == 200, introspected.text
    assert introspected.json()["active"] is True
    revoked = client.post("/oauth/revoke", data=form, headers=creds.basic())
    assert revoked.status_code == 200, revoked.text
    assert client.get(PROTECTED, headers=_bearer(token)).status_code == 401


def test_missing_scope_is_403(client: TestClient, factory: Factory) -> None:
    response = client.get(PROTECTED, headers=factory.headers("credit:check"))
    assert response.status_code == 403
    assert response.json()["type"].endswith("/problems/forbidden")
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="admin:clients"' in challenge


def test_revoked_token_is_refused_and_inactive(client: TestClient, factory: Factory) -> None:
    creds = factory.client("admin:clients")
    token = factory.token(creds)
    assert client.get(PROTECTED, headers=_bearer(token)).status_code == 200
    active = client.post("/oauth/introspect", data={"token": token}, headers=creds.basic()).json()
    assert active["active"] is True
    assert active["client_id"] == creds.client_id
    assert (
        client.post("/oauth/revoke", data={"token": token}, headers=creds.basic()).status_code
        == 200
    )
    _assert_invalid_token(client.get(PROTECTED, headers=_bearer(token)))
    assert client.post(
        "/oauth/introspect", data={"token": token}, headers=creds.basic()
    ).json() == {"active": False}


def test_client_may_not_introspect_or_revoke_anothers_token(
    client: TestClient, factory: Factory
) -> None:
    owner = factory.client("admin:clients")
    other = factory.client("credit:check")
    token = factory.token(owner)
    assert client.post(
        "/oauth/introspect", data={"token": token}, headers=other.basic()
    ).json() == {"active": False}
    refused = client.post("/oauth/revoke", data={"token": token}, headers=other.basic())
    assert refused.status_code == 400
    assert client.get(PROTECTED, headers=_bearer(token)).status_code == 200


def test_introspection_needs_client_authentication(client: TestClient, factory: Factory) -> None:
    token = factory.token(factory.client("admin:clients"))
    response = client.post("/oauth/introspect", data={"token": token})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_suspension_refuses_existing_tokens_for_good(client: TestClient, factory: Factory) -> None:
    victim = factory.client("admin:clients")
    token = factory.token(victim)
    admin = factory.headers("admin:clients")
    assert (
        client.patch(
            f"/v1/admin/clients/{victim.client_id}", json={"status": "suspended"}, headers=admin
        ).status_code
        == 200
    )
    _assert_invalid_token(client.get(PROTECTED, headers=_bearer(token)))
    assert client.post(
        "/oauth/introspect", data={"token": token}, headers=factory.client().basic()
    ).json() == {"active": False}
    assert (
        client.patch(
            f"/v1/admin/clients/{victim.client_id}", json={"status": "active"}, headers=admin
        ).status_code
        == 200
    )
    # Made active again, the client gets new tokens, but those issued before the suspension
    # stay refused: a suspension often answers a leak, and must not be undone by a PATCH.
    _assert_invalid_token(client.get(PROTECTED, headers=_bearer(token)))
    assert client.post(
        "/oauth/introspect", data={"token": token}, headers=victim.basic()
    ).json() == {"active": False}
    time.sleep(1.05)  # a token's iat is whole seconds: one from the suspension's second is refused
    fresh = factory.token(victim)
    assert client.get(PROTECTED, headers=_bearer(fresh)).status_code == 200
    introspected = client.post("/oauth/introspect", data={"token": fresh}, headers=victim.basic())
    assert introspected.json()["active"] is True


def test_scope_removed_from_client_applies_to_existing_tokens(
    client: TestClient, factory: Factory
) -> None:
    target = factory.client("admin:clients credit:check")
    token = factory.token(target)
    admin = factory.headers("admin:clients")
    assert (
        client.patch(
            f"/v1/admin/clients/{target.client_id}",
            json={"scopes": ["credit:check"]},
            headers=admin,
        ).status_code
        == 200
    )
    assert client.get(PROTECTED, headers=_bearer(token)).status_code == 403


def test_a_key_another_process_made_is_trusted_at_once(
    client: TestClient, factory: Factory
) -> None:
    """Another API worker or node (or ``creditshare keys rotate``) rotates the token key and
    signs with the new one at once; this process, which reloads its keys every 30 s, takes a
    token with that unknown ``kid`` as a cue to reload then, instead of refusing it for up to
    half a minute. A forged ``kid`` is still refused, and reloads at most once a second."""
    state = client.app.state  # type: ignore[attr-defined]
    other_node = KeyStore(state.sessionmaker, state.keyring, overlap_seconds=600)
    creds = factory.client("admin:clients")
    verifiers = state.key_store.view().token_verifiers
    claims = jwt.decode(factory.token(creds), verifiers, algorithms=["ES256"]).claims
    new_kid = other_node.rotate("token")
    assert new_kid not in state.key_store.view().token_kids  # not reloaded here yet
    signer = other_node.view().token_signer
    header = {"typ": "at+jwt", "alg": "ES256", "kid": new_kid}
    token = jwt.encode(header, {**claims, "jti": "rotated-elsewhere"}, signer)
    assert client.get(PROTECTED, headers=_bearer(token)).status_code == 200

    reloads: list[float] = []
    original = state.key_store.refresh
    state.key_store.refresh = lambda: reloads.append(time.time()) or original()
    try:
        for _ in range(5):
            forged = jwt.encode({**header, "kid": "key_forged"}, claims, signer)
            _assert_invalid_token(client.get(PROTECTED, headers=_bearer(forged)))
    finally:
        del state.key_store.refresh
    assert len(reloads) <= 1


def test_a_rotation_by_another_process_is_published_and_used_within_a_second(
    client: TestClient, factory: Factory
) -> None:
    """``creditshare keys rotate`` runs in another process: the JWKS lists the new key, and
    new tokens are signed with it, within about a second (not the 30 s of the receipts'
    reload), while the old key stays listed for its overlap."""
    state = client.app.state  # type: ignore[attr-defined]
    old_kid = state.key_store.view().token_signer.kid
    creds = factory.client("admin:clients")
    factory.token(creds)
    rotated_at = time.monotonic()
    new_kid = KeyStore(state.sessionmaker, state.keyring, overlap_seconds=600).rotate("token")

    def kid_of_a_new_token() -> str:
        token = factory.token(creds)
        return str(json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"])

    # The token endpoint first, before anything else could reload the keys for it.
    while kid_of_a_new_token() != new_kid:
        # Far below the 30 s reload of everything else: only the early reload gets here.
        assert time.monotonic() - rotated_at < 15, "new tokens still signed with the old key"
        time.sleep(0.1)
    kids = {k["kid"] for k in client.get("/oauth/jwks").json()["keys"]}
    assert {old_kid, new_kid} <= kids


def test_key_rotation_overlap_then_retirement(client: TestClient, factory: Factory) -> None:
    store = client.app.state.key_store  # type: ignore[attr-defined]
    creds = factory.client("admin:clients")
    old_token = factory.token(creds)
    old_kid = store.view().token_signer.kid
    new_kid = store.rotate("token")
    kids = {k["kid"] for k in client.get("/oauth/jwks").json()["keys"]}
    assert {old_kid, new_kid} <= kids
    assert client.get(PROTECTED, headers=_bearer(old_token)).status_code == 200
    new_token = factory.token(creds)
    assert new_token != old_token
    store.retire_now(old_kid)
    assert old_kid not in {k["kid"] for k in client.get("/oauth/jwks").json()["keys"]}
    _assert_invalid_token(client.get(PROTECTED, headers=_bearer(old_token)))
    assert client.get(PROTECTED, headers=_bearer(new_token)).status_code == 200


def test_jwks_has_public_keys_only(client: TestClient) -> None:
    keys = client.get("/oauth/jwks").json()["keys"]
    assert keys
    for key in keys:
        assert key["use"] == "sig"
        assert key["alg"] == "ES256"
        assert key["kid"]
        assert "d" not in key


def test_metadata(client: TestClient) -> None:
    meta = client.get("/.well-known/oauth-authorization-server").json()
    assert meta["issuer"] == ISSUER
    assert meta["token_endpoint"] == f"{ISSUER}/oauth/token"
    assert meta["jwks_uri"] == f"{ISSUER}/oauth/jwks"
    assert meta["introspection_endpoint"] == f"{ISSUER}/oauth/introspect"
    assert meta["revocation_endpoint"] == f"{ISSUER}/oauth/revoke"
    assert meta["grant_types_supported"] == ["client_credentials"]
    assert set(meta["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "private_key_jwt",
    }
    assert "none" not in meta["token_endpoint_auth_signing_alg_values_supported"]
    assert "audit:read" in meta["scopes_supported"]
    # RFC 8414 section 2: required where the endpoint's methods include private_key_jwt.
    for endpoint in ("introspection", "revocation"):
        assert "private_key_jwt" in meta[f"{endpoint}_endpoint_auth_methods_supported"]
        assert (
            meta[f"{endpoint}_endpoint_auth_signing_alg_values_supported"]
            == (meta["token_endpoint_auth_signing_alg_values_supported"])
        )


def test_metadata_passes_authlib_validation(client: TestClient) -> None:
    """An off-the-shelf validator accepts the metadata: authlib checks every RFC 8414 member
    (it refused the empty ``response_types_supported`` this server once sent). It wants
    https URLs, which a deployment's public URL gives and the test client's does not."""
    text = client.get("/.well-known/oauth-authorization-server").text
    meta = json.loads(text.replace(f'"{ISSUER}', f'"{ISSUER.replace("http:", "https:")}'))
    AuthorizationServerMetadata(meta).validate()
    assert meta["response_types_supported"] == ["none"]


def test_every_v1_route_declares_a_scope(client: TestClient) -> None:
    """Deny by default: a /v1 route without a scoped principal dependency fails this test."""
    routes = [r for r in api_routes(client.app) if r.path.startswith("/v1")]
    assert len(routes) >= 20  # the walk really sees the route table
    unscoped = [f"{sorted(r.methods)} {r.path}" for r in routes if not r.scopes]
    assert unscoped == []


def test_keys_asked_fresh_survive_a_database_that_does_not_answer(client: TestClient) -> None:
    """The JWKS and new tokens ask for keys at most a second old; a database that cannot
    answer then leaves the keys of the usual 30-second reload in force, and is asked again
    a second later, not by every caller; past 30 seconds the failure is the caller's."""
    state = client.app.state  # type: ignore[attr-defined]
    now = [1000.0]
    calls: list[float] = []
    healthy = True

    def sessions() -> Any:
        calls.append(now[0])
        if not healthy:
            raise OperationalError("SELECT", {}, Exception("server closed the connection"))
        return state.sessionmaker()

    store = KeyStore(sessions, state.keyring, overlap_seconds=600, clock=lambda: now[0])
    kids = store.view().token_kids
    healthy = False
    now[0] += 2
    assert store.view(max_age=PUBLISHED_SECONDS).token_kids == kids  # the keys in force
    assert store.view(max_age=PUBLISHED_SECONDS).token_kids == kids
    assert len(calls) == 2  # asked once, not by each caller
    now[0] += 2
    store.view(max_age=PUBLISHED_SECONDS)
    assert len(calls) == 3  # asked again a second later
    now[0] += REFRESH_SECONDS
    with pytest.raises(OperationalError):
        store.view(max_age=PUBLISHED_SECONDS)
