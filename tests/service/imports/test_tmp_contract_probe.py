from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import checks

from tests.fixtures.factories import Factory

schemathesis.openapi.media_type(
    "application/x-ndjson",
    st.lists(st.binary(max_size=200), max_size=5).map(lambda parts: b"\n".join(parts)),
)

ALL_SCOPES = "credit:check credit:detail credit:pii admin:clients admin:data audit:read"
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.negative_data_rejection,
]


@pytest.fixture(scope="module")
def api_schema(app_client: TestClient) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", app_client.app).include(
        path_regex="^/v1/admin/(merchants|records|imports)"
    )


@pytest.fixture(scope="module")
def bearer(app_client: TestClient) -> dict[str, str]:
    return Factory(app_client).headers(ALL_SCOPES, rate_plan="internal")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_operations_conform(case: schemathesis.Case, bearer: dict[str, str]) -> None:
    case.call_and_validate(headers=bearer, checks=CHECKS)
