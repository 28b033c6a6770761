"""Schemathesis drives every documented operation from the served OpenAPI document.

The fuzzer plays an independent third-party client: it generates requests from the
schema alone, we only add what a real client adds (a token and an RFC 9421 signature over
whatever it generated), and every response must honour the document: no 5xx, documented
status codes and content types, bodies that match their schemas, and problem+json errors
with a stable `code`.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from app.entrypoints.devstack import Stack
from tests.support.api_client import ApiClient, ClientFactory

ALL_SCOPES = [
    "clients:admin",
    "kyc:write",
    "ledger:read",
    "ledger:write",
    "payments:read",
    "payments:write",
    "refunds:write",
    "payouts:write",
    "risk:read",
    "risk:write",
]
EXAMPLES_PER_OPERATION = 15
# Headers a real client computes itself; the fuzzer's random values would only test that
# we reject garbage signatures, which the identity tests already prove.
CLIENT_COMPUTED_HEADERS = {"signature-input", "signature", "content-digest", "authorization"}


@pytest.fixture(scope="module")
def live_http(live_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_stack.api_url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def evidence_http(live_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_stack.evidence_url, timeout=30) as http:
        yield http


def _fuzz_client(
    service: str,
    client_factory: ClientFactory,
    live_http: httpx.Client,
    evidence_http: httpx.Client,
) -> tuple[ApiClient, httpx.Client]:
    if service == "api":
        return client_factory(scopes=ALL_SCOPES, name="schemathesis", http=live_http), live_http
    # The evidence service trusts the API's tokens: fetch one there, then talk to evidence.
    client = client_factory(
        scopes=["evidence:read", "evidence:write"], name="schemathesis-evidence", http=live_http
    )
    client.token()
    client.http = evidence_http
    return client, evidence_http


# Registering a webhook endpoint with a generated URL would make the worker call whatever
# the fuzzer invented; its validation is covered by the payments webhook tests instead.
NOT_FUZZED = {("POST", "/v1/oauth/token"), ("POST", "/v1/webhook-endpoints")}


def _operations(document: dict[str, Any]) -> list[Any]:
    schema = schemathesis.openapi.from_dict(document)
    operations = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in NOT_FUZZED:
            continue
        if operation.path.startswith("/v1/") and operation.path != "/v1/oauth/token":
            operations.append(operation)
    return operations


def _send(client: ApiClient, case: Any) -> httpx.Response:
    kwargs = case.as_transport_kwargs(base_url="")
    headers = {
        name: value
        for name, value in (kwargs.get("headers") or {}).items()
        if name.lower() not in CLIENT_COMPUTED_HEADERS
    }
    idempotency_key = headers.pop("Idempotency-Key", None)
    if idempotency_key is not None:
        # A real client makes a fresh key per new request; the fuzzer's tiny alphabet
        # would otherwise reuse keys across different bodies (a correct 422).
        idempotency_key = f"{uuid.uuid4().hex}-{idempotency_key[:200]}"
    request = client.build(
        kwargs["method"],
        kwargs["url"],
        json=kwargs.get("json"),
        content=kwargs.get("data") if isinstance(kwargs.get("data"), bytes) else None,
        params=kwargs.get("params"),
        headers=headers,
        idempotency_key=idempotency_key,
    )
    return client.send(request)


@pytest.mark.parametrize("service", ["api", "evidence"])
def test_every_documented_operation_honours_its_contract_when_fuzzed(
    service: str,
    client_factory: ClientFactory,
    live_http: httpx.Client,
    evidence_http: httpx.Client,
) -> None:
    fuzz_client, http = _fuzz_client(service, client_factory, live_http, evidence_http)
    document = http.get("/openapi.json").json()
    operations = _operations(document)
    assert len(operations) >= 8, "the document should list the /v1 operations"
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: Any) -> None:
            response = _send(fuzz_client, case)
            statuses[response.status_code] += 1
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} -> {response.status_code}"
            )
            if response.status_code >= 400:
                assert response.headers["content-type"].startswith("application/problem+json")
                assert isinstance(response.json().get("code"), str)
            # positive_data_acceptance is left out: schema-valid data can still break a
            # business rule (an unknown account id, a PEM that is not a key), and such a
            # 4xx is the documented answer, not a contract violation. ignored_auth is left
            # out because this client replaces the fuzzer's generated credentials with
            # real ones on purpose (tests/integration/test_identity*.py prove the 401s).
            case.validate_response(
                response,
                excluded_checks=[checks.positive_data_acceptance, checks.ignored_auth],
            )

        try:
            check()
        except Exception as error:  # noqa: BLE001 - collect every operation's failure
            failures.append(f"{operation.method.upper()} {operation.path}: {error}"[:2000])
    assert not failures, "\n\n".join(failures)
    # The fuzzer must really have reached the handlers, not only bounced off validation.
    assert sum(statuses.values()) >= len(operations) * 5, statuses
    assert any(200 <= status < 300 for status in statuses), statuses


def test_token_endpoint_honours_its_contract_when_form_body_is_fuzzed(
    live_http: httpx.Client,
) -> None:
    """The token endpoint's form body, from the schema alone: control characters, NUL,
    odd lengths. Every answer is a documented RFC 6749 error or a token, never a 5xx."""
    document = live_http.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    operation = next(
        result.ok()
        for result in schema.get_all_operations()
        if result.ok().path == "/v1/oauth/token"
    )
    statuses: Counter[int] = Counter()

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION * 4,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case: Any) -> None:
        kwargs = case.as_transport_kwargs(base_url="")
        response = live_http.request(
            kwargs["method"],
            kwargs["url"],
            data=kwargs.get("data"),
            content=kwargs.get("content"),
            headers={
                name: value
                for name, value in (kwargs.get("headers") or {}).items()
                if name.lower() != "authorization"
            },
        )
        statuses[response.status_code] += 1
        assert response.status_code < 500, f"{kwargs.get('data')!r} -> {response.status_code}"
        # Repeated attempts from one address are limited (429); anything else is documented.
        # positive_data_acceptance is left out as above: a schema-valid form can still
        # repeat a field or name an unknown client, and the RFC 6749 error is the answer.
        if response.status_code != 429:
            case.validate_response(
                response,
                excluded_checks=[checks.ignored_auth, checks.positive_data_acceptance],
            )

    check()
    assert statuses[401] + statuses[400] > 0, statuses
