"""Contract fuzzing: schemathesis over every operation of the served OpenAPI document,
with real tokens, checking that nothing answers 5xx, every status and header is
documented, every response matches its schema, and invalid input is refused."""

from __future__ import annotations

import os
from collections.abc import Iterator

import orjson
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis import checks

from service.app import create_app
from tests.conftest import make_settings
from tests.fixtures.databases import drop_postgres, provision_database, using_postgres
from tests.fixtures.factories import Factory

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
def contract_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """An app on a database of its own: the fuzzer creates and changes rate plans, clients
    and policies that other tests must not see."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    tmp = tmp_path_factory.mktemp("contract")
    url = provision_database(worker, tmp, "contract")
    app = create_app(make_settings(url, None, tmp))
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client
    finally:
        if using_postgres():
            drop_postgres(url)


@pytest.fixture(scope="module")
def api_schema(contract_client: TestClient) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", contract_client.app)


@pytest.fixture(scope="module")
def bearer(contract_client: TestClient) -> dict[str, str]:
    factory = Factory(contract_client)
    return factory.headers(ALL_SCOPES, rate_plan="internal")


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: schemathesis.SerializationContext, value: object) -> bytes:
    """Generated import bodies: one JSON document per line."""
    items = value if isinstance(value, list) else [value]
    return b"\n".join(orjson.dumps(item) for item in items)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_operations_conform(case: schemathesis.Case, bearer: dict[str, str]) -> None:
    case.call_and_validate(headers=bearer, checks=CHECKS)


def test_stateful_links(api_schema: schemathesis.BaseSchema, bearer: dict[str, str]) -> None:
    """Create-then-fetch sequences through the OpenAPI links (clients, credit checks): what
    a POST returns can be fetched, updated and conforms to the schema."""
    base = api_schema.as_state_machine()

    class Workflow(base):  # type: ignore[valid-type, misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, object]:
            return {"headers": bearer}

        def validate_response(
            self, response: schemathesis.Response, case: schemathesis.Case, **kwargs: object
        ) -> None:
            kwargs.pop("additional_checks", None)
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    Workflow.run(
        settings=settings(
            max_examples=15,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
