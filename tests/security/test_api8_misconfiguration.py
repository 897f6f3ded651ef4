"""OWASP API8:2023 Security Misconfiguration: no stack traces, no echoed input, no banner,
no CORS, documentation switchable off."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.conftest import make_settings
from tests.fixtures.factories import Factory


def test_no_stack_trace_or_echo_on_errors(client: TestClient, factory: Factory) -> None:
    headers = factory.headers("credit:check")
    probes = [
        client.post(
            "/v1/credit-checks",
            json={"uscc": "'; DROP TABLE merchants;--", "purpose": "ONBOARDING"},
            headers=headers,
        ),
        client.post(
            "/v1/credit-checks",
            content=b"\xff\xfe{{{",
            headers={**headers, "Content-Type": "application/json"},
        ),
        client.get("/v1/credit-checks/%3Cscript%3E", headers=headers),
        client.post(
            "/v1/credit-checks",
            json={"uscc": "91440300708461136T", "purpose": "<b>ONBOARDING</b>"},
            headers=headers,
        ),
    ]
    for response in probes:
        assert 400 <= response.status_code < 500, response.text
        text = response.text
        assert "Traceback" not in text
        assert 'File "' not in text
        assert "DROP TABLE" not in text
        assert "<script>" not in text
        assert "<b>" not in text


def test_no_server_banner_and_no_cors(client: TestClient) -> None:
    response = client.get("/healthz", headers={"Origin": "https://evil.example"})
    lowered = {k.lower() for k in response.headers}
    assert "server" not in lowered
    assert "x-powered-by" not in lowered
    assert "access-control-allow-origin" not in lowered


def test_docs_can_be_turned_off(settings: Settings, tmp_path: Path) -> None:
    closed = make_settings(
        settings.effective_database_url,
        None,
        tmp_path,
        docs_enabled=False,
        env="prod",
        public_url="https://credit.example.gov.cn",
    )
    with TestClient(create_app(closed), raise_server_exceptions=False) as http:
        assert http.get("/docs").status_code == 404
        assert http.get("/openapi.json").status_code == 404
        assert http.get("/healthz").status_code == 200
