"""Off-the-shelf OAuth clients (authlib's httpx integration) against a real server process."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT

from service.settings import Settings
from tests.auth.conftest import KeyPair
from tests.conftest import MASTER_KEY
from tests.fixtures.factories import Factory
from tests.fixtures.servers import live_server, server_env


@pytest.fixture(scope="module")
def server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = server_env(
        settings.effective_database_url,
        settings.redis_url,
        tmp_path_factory.mktemp("srv"),
        MASTER_KEY,
    )
    with live_server(env) as base:
        yield base


def test_client_secret_basic_with_authlib(server: str, factory: Factory) -> None:
    creds = factory.client("admin:clients")
    with OAuth2Client(
        creds.client_id, creds.secret, token_endpoint_auth_method="client_secret_basic"
    ) as oauth:
        token = oauth.fetch_token(f"{server}/oauth/token", grant_type="client_credentials")
        assert token["token_type"].lower() == "bearer"
        response = oauth.get(f"{server}/v1/admin/clients?limit=1")
        assert response.status_code == 200, response.text


def test_private_key_jwt_with_authlib(server: str, factory: Factory) -> None:
    keypair = KeyPair()
    creds = factory.client("admin:clients", jwks=keypair.jwks())
    # authlib's documented usage: the assertion's audience is the URL it posts to (the token
    # endpoint; RFC 7523 section 3) and it lives an hour.
    auth = PrivateKeyJWT(alg="ES256")
    with OAuth2Client(
        creds.client_id,
        keypair.private,
        token_endpoint_auth_method=auth,
    ) as oauth:
        token = oauth.fetch_token(f"{server}/oauth/token", grant_type="client_credentials")
        assert token["access_token"]
        assert oauth.get(f"{server}/v1/admin/clients?limit=1").status_code == 200


@pytest.fixture(scope="module")
def twin(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second API node of the test app: same database, Redis, keys and issuer."""
    env = server_env(
        settings.effective_database_url,
        settings.redis_url,
        tmp_path_factory.mktemp("twin"),
        MASTER_KEY,
        public_url=settings.public_url,
    )
    with live_server(env) as base:
        yield base


def test_revocation_is_seen_by_another_node(twin: str, factory: Factory) -> None:
    """The test app and the twin process share the database (and Redis when configured):
    a token revoked through one is refused by the other within moments."""
    server = twin
    creds = factory.client("admin:clients")
    token = factory.token(creds)
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{server}/v1/admin/clients?limit=1", headers=headers).status_code == 200
    revoked = factory.http.post("/oauth/revoke", data={"token": token}, headers=creds.basic())
    assert revoked.status_code == 200
    deadline = time.monotonic() + 5
    status = 200
    while time.monotonic() < deadline:
        status = httpx.get(f"{server}/v1/admin/clients?limit=1", headers=headers).status_code
        if status == 401:
            break
        time.sleep(0.05)
    assert status == 401
