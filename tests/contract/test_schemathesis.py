"""Contract fuzzing: schemathesis over every operation of the served OpenAPI document,
with real tokens, checking that nothing answers 5xx, every status and header is
documented, every response matches its schema, and invalid input is refused."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator

import orjson
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.core.parameters import ParameterLocation
from starlette.types import ASGIApp, Receive, Scope, Send

from service.app import create_app
from tests.conftest import make_settings
from tests.fixtures.databases import drop_postgres, provision_database, using_postgres
from tests.fixtures.factories import Factory, random_uscc
from tests.service.credit_checks.support import ensure_plan

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
def contract_client(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str | None
) -> Iterator[TestClient]:
    """An app on a database of its own: the fuzzer creates and changes rate plans, clients
    and policies that other tests must not see. It shares the worker's Redis (when one is
    configured), like every other app of the suite: limiter keys are per client id."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    tmp = tmp_path_factory.mktemp("contract")
    url = provision_database(worker, tmp, "contract")
    app = create_app(make_settings(url, redis_url, tmp))
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client
    finally:
        if using_postgres():
            drop_postgres(url)


def _without_lifespan(app: ASGIApp) -> ASGIApp:
    """``app`` for schemathesis, minus a lifespan of its own. ``contract_client`` runs the
    app's lifespan for the whole module; schemathesis would start a second one and end it
    at every test's teardown, stopping services the app builds once (the single-check
    coalescer answers 500 from then on)."""

    async def served(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})

    return served


@pytest.fixture(scope="module")
def api_schema(contract_client: TestClient) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", _without_lifespan(contract_client.app))


@pytest.fixture(scope="module")
def merchant_codes(contract_client: TestClient) -> list[str]:
    """Merchants in the contract database, so a credit check can succeed (201): a company
    without records, a company with an active record, and an individual business (masked
    personal data)."""
    factory = Factory(contract_client)
    clean = factory.merchant()
    recorded = factory.merchant()
    factory.record(recorded)
    individual = factory.merchant(random_uscc("92"), name="河西区王记餐馆")
    return [clean, recorded, individual]


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


CREATE_CHECK = "POST /v1/credit-checks"
GET_CHECK = "GET /v1/credit-checks/{check_id}"
PUT_PLAN = "PUT /v1/admin/rate-plans/{name}"
STATEFUL_PLAN = "contract-stateful"
DECOY_PLAN = "contract-decoy"


def _run_workflow(
    schema: schemathesis.BaseSchema,
    client: TestClient,
    merchant_codes: list[str],
    *,
    max_examples: int,
) -> set[tuple[str, int]]:
    """Run the schema's state machine as a client of its own; returns the
    ``(operation, status)`` pairs seen.

    A generated code is practically never a registered merchant, so a schema-valid
    ``POST /v1/credit-checks`` body gets one of the seeded merchants' codes instead: only
    then can it answer 201 and its ``GetCheck`` link be followed. A change the fuzzer aims
    at its own client or plan (it learns both from responses) goes to a decoy instead:
    suspending itself or taking away its own purposes would leave nothing to follow."""
    factory = Factory(client)
    plan = ensure_plan(factory, STATEFUL_PLAN, rate=100_000.0, burst=100_000, quota=100_000_000)
    creds, bearer = factory.authed(ALL_SCOPES, rate_plan=plan)
    decoy = factory.client("credit:check").client_id
    seen: set[tuple[str, int]] = set()

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: schemathesis.Case) -> None:
            if case.path_parameters.get("client_id") == creds.client_id:
                case.path_parameters["client_id"] = decoy
            if case.operation.label == PUT_PLAN and case.path_parameters.get("name") == plan:
                case.path_parameters["name"] = DECOY_PLAN
            body = case.body
            if (
                case.operation.label == CREATE_CHECK
                and isinstance(body, dict)
                and isinstance(generated := body.get("uscc"), str)
                and not (case.meta and case.meta.is_negative_at(ParameterLocation.BODY))
            ):
                body["uscc"] = merchant_codes[zlib.crc32(generated.encode()) % len(merchant_codes)]

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, object]:
            return {"headers": bearer}

        def after_call(self, response: schemathesis.Response, case: schemathesis.Case) -> None:
            super().after_call(response, case)
            seen.add((case.operation.label, response.status_code))

        def validate_response(
            self, response: schemathesis.Response, case: schemathesis.Case, **kwargs: object
        ) -> None:
            kwargs.pop("additional_checks", None)
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    Workflow.run(
        settings=settings(
            max_examples=max_examples,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    return seen


def test_stateful_links(
    api_schema: schemathesis.BaseSchema, contract_client: TestClient, merchant_codes: list[str]
) -> None:
    """Sequences over every operation, through the OpenAPI links (clients, credit checks):
    what a POST returns can be fetched, updated and conforms to the schema. Credit checks
    are made on seeded merchants, so they can be created (201) and their link taken;
    whether a run over every operation does is left to chance (the next test makes sure)."""
    seen = _run_workflow(api_schema, contract_client, merchant_codes, max_examples=15)
    assert seen, "the state machine made no call"


def test_credit_check_link_is_followed(
    api_schema: schemathesis.BaseSchema, contract_client: TestClient, merchant_codes: list[str]
) -> None:
    """The ``GetCheck`` link of ``POST /v1/credit-checks`` (201) leads to the check it
    created: the fuzzer, on just these two operations, fetches it (200) and both responses
    conform to the schema."""
    pair = api_schema.include(name=[CREATE_CHECK, GET_CHECK])
    seen = _run_workflow(pair, contract_client, merchant_codes, max_examples=15)
    assert (CREATE_CHECK, 201) in seen, sorted(seen)
    assert (GET_CHECK, 200) in seen, sorted(seen)
