"""The request envelope: problems, request ids, body limits, security headers, operations."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.problems.catalog import CATALOG
from tests.fixtures.factories import Factory


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"]
        == "abc-123"
    )
    generated = client.get("/healthz").headers["x-request-id"]
    assert generated.startswith("req_")
    hostile = client.get("/healthz", headers={"X-Request-ID": "<script>" + "x" * 300}).headers[
        "x-request-id"
    ]
    assert hostile.startswith("req_")


@pytest.mark.parametrize(
    "sent",
    ["3f2b6c1e-9d4a-4c6e-8f0a-1b2c3d4e5f60", "01JD5Z8Q2W/abc+def==", "job 42:step=3", "a" * 64],
)
def test_common_request_id_forms_are_echoed(client: TestClient, sent: str) -> None:
    response = client.get("/v1/credit-checks", headers={"X-Request-ID": sent})
    assert response.headers["x-request-id"] == sent
    assert response.json()["request_id"] == sent  # the 401 problem names it too


@pytest.mark.parametrize("sent", ["a" * 65, " leading", "trailing ", 'say "hi"', "<b>", "é"])
def test_other_request_ids_are_replaced(client: TestClient, sent: str) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": sent.encode("utf-8")})  # type: ignore[dict-item]
    assert response.headers["x-request-id"].startswith("req_")


def test_unknown_route_is_a_problem_without_echo(client: TestClient) -> None:
    response = client.get("/v1/nothing-here-<script>alert(1)</script>")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == "http://testserver/problems/not-found"
    assert set(body) >= {"type", "title", "status", "detail", "request_id"}
    assert "script" not in response.text


def test_method_not_allowed(client: TestClient) -> None:
    response = client.delete("/oauth/jwks")
    assert response.status_code == 405
    assert response.json()["type"].endswith("/problems/method-not-allowed")
    assert response.headers["allow"] == "GET"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/credit-checks", "GET, POST"),
        ("PUT", "/v1/credit-checks", "GET, POST"),
        ("DELETE", "/v1/admin/clients", "GET, POST"),
        ("DELETE", "/v1/admin/clients/cs_0000", "GET, PATCH"),
        ("DELETE", "/v1/admin/policy", "GET, PUT"),
    ],
)
def test_allow_lists_every_method_of_the_path(
    client: TestClient, method: str, path: str, allowed: str
) -> None:
    """RFC 9110 section 15.5.6: a 405 lists the methods the target resource supports, not
    only those of the first route that matched its path."""
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed


def test_chinese_problems(client: TestClient) -> None:
    response = client.get(
        "/v1/admin/clients", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}
    )
    body = response.json()
    assert body["title"] == CATALOG["unauthorized"].title_zh
    assert body["detail"] == CATALOG["unauthorized"].detail_zh
    english = client.get("/v1/admin/clients", headers={"Accept-Language": "en-US,zh;q=0.1"}).json()
    assert english["title"] == "Unauthorized"


def test_validation_errors_list_fields_without_echoing_values(
    client: TestClient, factory: Factory
) -> None:
    admin = factory.headers("admin:clients")
    response = client.post(
        "/v1/admin/clients",
        json={"name": "x", "scopes": ["root:everything"], "purposes": [], "<img src=x>": 1},
        headers=admin,
    )
    assert response.status_code == 422
    body = response.json()
    assert body["type"].endswith("/problems/validation-failed")
    fields = {e["field"] for e in body["errors"]}
    assert "scopes[0]" in fields
    assert "root:everything" not in response.text
    assert "<img" not in response.text


def test_malformed_json(client: TestClient, factory: Factory) -> None:
    admin = factory.headers("admin:clients")
    response = client.post(
        "/v1/admin/clients",
        content=b'{"name": ',
        headers={**admin, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["message"] == "Malformed JSON body"


def test_body_size_limit(client: TestClient, factory: Factory) -> None:
    admin = factory.headers("admin:clients")
    huge = b'{"name": "' + b"x" * 2_000_000 + b'"}'
    response = client.post(
        "/v1/admin/clients", content=huge, headers={**admin, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["type"].endswith("/problems/payload-too-large")


def test_security_headers_and_no_server_banner(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "server" not in {k.lower() for k in response.headers}


def test_problem_pages(client: TestClient) -> None:
    for slug in CATALOG:
        page = client.get(f"/problems/{slug}")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert CATALOG[slug].title_en in page.text
    assert client.get("/problems/no-such-problem").status_code == 404


def test_operations_endpoints(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["database"]["ok"] is True
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "creditshare_http_requests_total" in metrics.text
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200
