"""RFC 6749 client credentials with client_secret_basic and RFC 7523 private_key_jwt:
the happy paths and one refusal for each way a credential can be wrong."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from fastapi.testclient import TestClient
from joserfc import jws, jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from tests.auth.conftest import KeyPair, assertion_form
from tests.fixtures.factories import Creds, Factory

ISSUER = "http://testserver"
GRANT = {"grant_type": "client_credentials"}


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def _assert_oauth_error(response: object, status: int, error: str) -> None:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["error"] == error
    assert isinstance(body.get("error_description"), str)
    assert body["error_description"]
    assert response.headers["cache-control"] == "no-store"  # type: ignore[attr-defined]
    if status == 401:  # a Basic challenge names its realm (RFC 7617 section 2)
        assert 'realm="creditshare"' in response.headers["www-authenticate"]  # type: ignore[attr-defined]


def test_secret_basic_issues_rfc9068_token(client: TestClient, factory: Factory) -> None:
    creds = factory.client("credit:check credit:detail")
    response = client.post("/oauth/token", data=GRANT, headers=creds.basic())
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert 0 < body["expires_in"] <= 900
    assert set(body["scope"].split()) == {"credit:check", "credit:detail"}
    token = body["access_token"]
    header = jws.extract_compact(token.encode()).headers()
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "ES256"
    jwks = KeySet.import_key_set(client.get("/oauth/jwks").json())
    claims = jwt.decode(token, jwks, algorithms=["ES256"]).claims
    assert claims["iss"] == ISSUER
    assert claims["aud"] == ISSUER
    assert claims["sub"] == claims["client_id"] == creds.client_id
    assert claims["exp"] - claims["iat"] == body["expires_in"]
    assert claims["jti"]
    assert claims["scope"] == body["scope"]


def test_scope_subset_and_invalid_scope(client: TestClient, factory: Factory) -> None:
    creds = factory.client("credit:check credit:detail")
    ok = client.post("/oauth/token", data={**GRANT, "scope": "credit:check"}, headers=creds.basic())
    assert ok.json()["scope"] == "credit:check"
    refused = client.post(
        "/oauth/token", data={**GRANT, "scope": "credit:check admin:data"}, headers=creds.basic()
    )
    _assert_oauth_error(refused, 400, "invalid_scope")
    unknown = client.post(
        "/oauth/token", data={**GRANT, "scope": "everything"}, headers=creds.basic()
    )
    _assert_oauth_error(unknown, 400, "invalid_scope")


def test_wrong_secret(client: TestClient, factory: Factory) -> None:
    creds = factory.client()
    response = client.post("/oauth/token", data=GRANT, headers=_basic(creds.client_id, "css_wrong"))
    _assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic")


def test_unknown_client(client: TestClient) -> None:
    response = client.post(
        "/oauth/token", data=GRANT, headers=_basic("cs_doesnotexist", "whatever")
    )
    _assert_oauth_error(response, 401, "invalid_client")


def test_every_failed_client_authentication_reads_the_same(
    client: TestClient, factory: Factory, keypair: KeyPair
) -> None:
    """An unknown client, a wrong secret and a bad assertion get the same answer, so that
    the token endpoint does not tell which client ids exist."""
    creds = factory.client()
    jwt_creds = _jwt_client(factory, keypair)
    answers = [
        client.post("/oauth/token", data=GRANT, headers=_basic("cs_doesnotexist", "whatever")),
        client.post("/oauth/token", data=GRANT, headers=_basic(creds.client_id, "css_wrong")),
        client.post(
            "/oauth/token",
            data=assertion_form(KeyPair().assertion(jwt_creds.client_id, ISSUER)),
        ),
    ]
    assert {r.status_code for r in answers} == {401}
    assert len({r.content for r in answers}) == 1
    assert len({r.headers["www-authenticate"] for r in answers}) == 1


def test_one_authentication_method_and_a_client_id_that_agrees(
    client: TestClient, factory: Factory, keypair: KeyPair
) -> None:
    """RFC 6749 2.3: one method of client authentication per request; RFC 7521 4.2: a
    ``client_id`` parameter must name the client the credentials authenticate."""
    creds = factory.client()
    jwt_creds = _jwt_client(factory, keypair)
    assertion = keypair.assertion(jwt_creds.client_id, ISSUER)
    basic_and_assertion = client.post(
        "/oauth/token", data=assertion_form(assertion), headers=creds.basic()
    )
    _assert_oauth_error(basic_and_assertion, 400, "invalid_request")
    basic_and_posted = client.post(
        "/oauth/token", data={**GRANT, "client_secret": "css_x"}, headers=creds.basic()
    )
    _assert_oauth_error(basic_and_posted, 400, "invalid_request")
    someone_else = client.post(
        "/oauth/token", data={**GRANT, "client_id": jwt_creds.client_id}, headers=creds.basic()
    )
    _assert_oauth_error(someone_else, 401, "invalid_client")
    other_assertion = keypair.assertion(jwt_creds.client_id, ISSUER)
    mismatched = client.post(
        "/oauth/token", data=assertion_form(other_assertion, client_id=creds.client_id)
    )
    _assert_oauth_error(mismatched, 401, "invalid_client")
    agreeing = client.post(
        "/oauth/token", data={**GRANT, "client_id": creds.client_id}, headers=creds.basic()
    )
    assert agreeing.status_code == 200, agreeing.text
    own_assertion = keypair.assertion(jwt_creds.client_id, ISSUER)
    agreeing_jwt = client.post(
        "/oauth/token", data=assertion_form(own_assertion, client_id=jwt_creds.client_id)
    )
    assert agreeing_jwt.status_code == 200, agreeing_jwt.text


def test_no_client_authentication(client: TestClient) -> None:
    _assert_oauth_error(client.post("/oauth/token", data=GRANT), 401, "invalid_client")


def test_suspended_client(client: TestClient, factory: Factory) -> None:
    creds = factory.client()
    admin = factory.headers("admin:clients")
    assert (
        client.patch(
            f"/v1/admin/clients/{creds.client_id}", json={"status": "suspended"}, headers=admin
        ).status_code
        == 200
    )
    _assert_oauth_error(
        client.post("/oauth/token", data=GRANT, headers=creds.basic()), 401, "invalid_client"
    )


def test_unsupported_grant_and_bad_requests(client: TestClient, factory: Factory) -> None:
    creds = factory.client()
    _assert_oauth_error(
        client.post("/oauth/token", data={"grant_type": "password"}, headers=creds.basic()),
        400,
        "unsupported_grant_type",
    )
    missing = client.post(
        "/oauth/token",
        content="scope=credit%3Acheck",
        headers={**creds.basic(), "Content-Type": "application/x-www-form-urlencoded"},
    )
    _assert_oauth_error(missing, 400, "invalid_request")
    duplicated = client.post(
        "/oauth/token",
        content="grant_type=client_credentials&grant_type=client_credentials",
        headers={**creds.basic(), "Content-Type": "application/x-www-form-urlencoded"},
    )
    _assert_oauth_error(duplicated, 400, "invalid_request")
    # Unrecognised parameters are ignored, repeated or not (RFC 6749 section 3.2).
    extra = client.post(
        "/oauth/token",
        content="grant_type=client_credentials&x-trace=1&x-trace=2&empty=",
        headers={**creds.basic(), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert extra.status_code == 200, extra.text
    as_json = client.post("/oauth/token", json=GRANT, headers=creds.basic())
    _assert_oauth_error(as_json, 400, "invalid_request")


def _jwt_client(factory: Factory, keypair: KeyPair, scopes: str = "credit:check") -> Creds:
    return factory.client(scopes, jwks=keypair.jwks())


def test_private_key_jwt(client: TestClient, factory: Factory, keypair: KeyPair) -> None:
    creds = _jwt_client(factory, keypair)
    response = client.post(
        "/oauth/token", data=assertion_form(keypair.assertion(creds.client_id, ISSUER))
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "credit:check"


NO_KID = {"kid": None}
"""An assertion header naming no key, as authlib's ``PrivateKeyJWT`` signs them."""


def test_an_assertion_without_kid_is_tried_with_each_registered_key(
    client: TestClient, factory: Factory
) -> None:
    """A client rotating its key registers the old and the new one; an assertion without a
    ``kid`` verifies with whichever of them signed it, and with no other key."""
    old, new = KeyPair(), KeyPair()
    rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "alg": "RS256"}, private=True)
    jwks = {"keys": [rsa.as_dict(private=False), *old.jwks()["keys"], *new.jwks()["keys"]]}
    creds = factory.client("credit:check", jwks=jwks)
    for signer in (old, new):
        response = client.post(
            "/oauth/token",
            data=assertion_form(signer.assertion(creds.client_id, ISSUER, header=NO_KID)),
        )
        assert response.status_code == 200, response.text
    forged = KeyPair().assertion(creds.client_id, ISSUER, header=NO_KID)
    _assert_oauth_error(
        client.post("/oauth/token", data=assertion_form(forged)), 401, "invalid_client"
    )


@pytest.mark.parametrize("path", ["token", "introspect"])
def test_assertion_audience_may_be_the_endpoint_url(
    client: TestClient, factory: Factory, keypair: KeyPair, path: str
) -> None:
    """RFC 7523 section 3 allows the token endpoint's URL as the audience, and off-the-shelf
    clients (authlib's ``PrivateKeyJWT``) send the URL they post to: accepted beside the
    issuer that the contract names."""
    creds = _jwt_client(factory, keypair)
    token = client.post(
        "/oauth/token", data=assertion_form(keypair.assertion(creds.client_id, ISSUER))
    ).json()["access_token"]
    assertion = keypair.assertion(creds.client_id, f"{ISSUER}/oauth/{path}")
    form = assertion_form(assertion)
    if path == "introspect":
        del form["grant_type"]
        form["token"] = token
    response = client.post(f"/oauth/{path}", data=form)
    assert response.status_code == 200, response.text
    if path == "introspect":
        assert response.json()["active"] is True


@pytest.mark.parametrize("header", ["Basic ", "Basic   ", "basic \t"])
def test_blank_basic_credentials_are_invalid_client(client: TestClient, header: str) -> None:
    """``Authorization: Basic`` with nothing after it is a failed authentication like any
    other (it once reached authlib, which could not split it: a 500)."""
    for path in ("token", "introspect", "revoke"):
        data = GRANT if path == "token" else {"token": "x"}
        response = client.post(f"/oauth/{path}", data=data, headers={"Authorization": header})
        _assert_oauth_error(response, 401, "invalid_client")
        wrong = client.post(f"/oauth/{path}", data=data, headers=_basic("cs_nobody", "nothing"))
        assert response.content == wrong.content


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"aud": "https://evil.example"}, "wrong audience"),
        ({"aud": ISSUER + "/"}, "not exactly the issuer"),
        ({"aud": ISSUER + "/oauth/jwks"}, "an endpoint that takes no client authentication"),
        ({"aud": [ISSUER, "https://evil.example"]}, "another audience beside the issuer"),
        ({"exp": int(time.time()) - 120, "iat": int(time.time()) - 300}, "expired"),
        ({"exp": int(time.time()) + 3600 + 120}, "lives more than an hour"),
        ({"iss": "cs_someoneelse"}, "iss differs from sub"),
        ({"jti": None}, "no jti"),
    ],
)
def test_bad_assertions_are_invalid_client(
    client: TestClient, factory: Factory, keypair: KeyPair, overrides: dict[str, object], why: str
) -> None:
    creds = _jwt_client(factory, keypair)
    assertion = keypair.assertion(creds.client_id, ISSUER, **overrides)
    _assert_oauth_error(
        client.post("/oauth/token", data=assertion_form(assertion)), 401, "invalid_client"
    )


def test_an_assertion_signed_for_an_hour_is_accepted(
    client: TestClient, factory: Factory, keypair: KeyPair
) -> None:
    """authlib's ``PrivateKeyJWT`` signs assertions for an hour by default: off-the-shelf
    clients must get a token."""
    creds = _jwt_client(factory, keypair)
    assertion = keypair.assertion(creds.client_id, ISSUER, exp=int(time.time()) + 3600)
    response = client.post("/oauth/token", data=assertion_form(assertion))
    assert response.status_code == 200, response.text


def test_an_expired_assertion_within_the_leeway_is_used_once(
    client: TestClient, factory: Factory, keypair: KeyPair
) -> None:
    """An assertion just past its ``exp`` is still accepted within the clock-skew leeway, and
    so its ``jti`` must be remembered for as long: a replay is refused."""
    creds = _jwt_client(factory, keypair)
    now = int(time.time())
    assertion = keypair.assertion(creds.client_id, ISSUER, iat=now - 60, exp=now - 5)
    assert client.post("/oauth/token", data=assertion_form(assertion)).status_code == 200
    other = keypair.assertion(creds.client_id, ISSUER)  # any later request purges old jtis
    assert client.post("/oauth/token", data=assertion_form(other)).status_code == 200
    _assert_oauth_error(
        client.post("/oauth/token", data=assertion_form(assertion)), 401, "invalid_client"
    )


def test_replayed_assertion(client: TestClient, factory: Factory, keypair: KeyPair) -> None:
    creds = _jwt_client(factory, keypair)
    assertion = keypair.assertion(creds.client_id, ISSUER)
    assert client.post("/oauth/token", data=assertion_form(assertion)).status_code == 200
    _assert_oauth_error(
        client.post("/oauth/token", data=assertion_form(assertion)), 401, "invalid_client"
    )


def test_forged_assertion_signed_by_another_key(
    client: TestClient, factory: Factory, keypair: KeyPair
) -> None:
    creds = _jwt_client(factory, keypair)
    forger = KeyPair(kid=keypair.kid)
    _assert_oauth_error(
        client.post("/oauth/token", data=assertion_form(forger.assertion(creds.client_id, ISSUER))),
        401,
        "invalid_client",
    )


def test_alg_none_and_hmac_assertions(
    client: TestClient, factory: Factory, keypair: KeyPair
) -> None:
    creds = _jwt_client(factory, keypair)
    now = int(time.time())
    claims = {
        "iss": creds.client_id,
        "sub": creds.client_id,
        "aud": ISSUER,
        "exp": now + 60,
        "jti": "x" * 20,
    }

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    unsigned = f"{b64(json.dumps({'alg': 'none'}).encode())}.{b64(json.dumps(claims).encode())}."
    _assert_oauth_error(
        client.post("/oauth/token", data=assertion_form(unsigned)), 401, "invalid_client"
    )
    # Algorithm confusion: HS256 "signed" with the client's public key as the secret.
    claims["jti"] = "y" * 20
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'kid': keypair.kid}).encode())}.{b64(json.dumps(claims).encode())}"
    mac = hmac.new(
        keypair.private.as_pem(private=False), signing_input.encode(), hashlib.sha256
    ).digest()
    confused = f"{signing_input}.{b64(mac)}"
    _assert_oauth_error(
        client.post("/oauth/token", data=assertion_form(confused)), 401, "invalid_client"
    )


def test_wrong_method_is_refused(client: TestClient, factory: Factory, keypair: KeyPair) -> None:
    basic_client = factory.client()
    # A client_secret_basic client may not authenticate with an assertion...
    other = KeyPair()
    assertion = other.assertion(basic_client.client_id, ISSUER)
    _assert_oauth_error(
        client.post("/oauth/token", data=assertion_form(assertion)), 401, "invalid_client"
    )
    # ...and a private_key_jwt client has no secret to present.
    jwt_client = _jwt_client(factory, keypair)
    _assert_oauth_error(
        client.post("/oauth/token", data=GRANT, headers=_basic(jwt_client.client_id, "anything")),
        401,
        "invalid_client",
    )


def test_registered_jwks_must_be_public(client: TestClient, factory: Factory) -> None:
    admin = factory.headers("admin:clients")
    private = ECKey.generate_key("P-256", private=True).as_dict(private=True)
    response = client.post(
        "/v1/admin/clients",
        json={
            "name": "leaky",
            "scopes": ["credit:check"],
            "purposes": ["ONBOARDING"],
            "rate_plan": "standard",
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [private]},
        },
        headers=admin,
    )
    assert response.status_code == 422
    assert private["d"] not in response.text
