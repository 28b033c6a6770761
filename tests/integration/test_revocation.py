"""Issue 10 item 4: a disabled client or a retired key is refused at once, on the API and
on the evidence service alike, while its access token is still unexpired."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import httpx
import pytest

from tests.integration.test_evidence_api import body
from tests.support.api_client import ApiClient, ClientFactory, new_private_key, public_pem


@pytest.fixture(scope="module")
def admin(client_factory: ClientFactory, api_http: httpx.Client) -> ApiClient:
    return client_factory(scopes=["clients:admin"], http=api_http)


def _writer(factory: ClientFactory, api_http: httpx.Client) -> ApiClient:
    client = factory(scopes=["evidence:write", "evidence:read", "ledger:read"], http=api_http)
    client.token()  # fetched while the client is active; reused after it is not
    return client


def _evidence_write(client: ApiClient, evidence_http: httpx.Client) -> httpx.Response:
    api_http, client.http = client.http, evidence_http
    try:
        return client.post("/v1/evidence", json=body(), idempotency_key=secrets.token_hex(8))
    finally:
        client.http = api_http


def _api_read(client: ApiClient) -> httpx.Response:
    return client.get("/v1/ledger/verify")


def test_both_services_refuse_a_token_when_its_client_was_disabled(
    client_factory: ClientFactory,
    admin: ApiClient,
    api_http: httpx.Client,
    evidence_http: httpx.Client,
) -> None:
    client = _writer(client_factory, api_http)
    assert _evidence_write(client, evidence_http).status_code == 201
    assert _api_read(client).status_code == 200
    disabled = admin.post(
        f"/v1/clients/{client.client_id}/disable", idempotency_key=secrets.token_hex(8)
    )
    assert disabled.status_code == 200, disabled.text
    refused = _evidence_write(client, evidence_http)
    assert refused.status_code == 401
    assert refused.json()["code"] == "unauthorized"
    assert _api_read(client).status_code == 401


def test_both_services_refuse_a_token_when_its_key_was_retired(
    client_factory: ClientFactory,
    admin: ApiClient,
    api_http: httpx.Client,
    evidence_http: httpx.Client,
) -> None:
    client = _writer(client_factory, api_http)
    assert _evidence_write(client, evidence_http).status_code == 201
    rotated = admin.post(
        f"/v1/clients/{client.client_id}/keys",
        json={
            "public_key_pem": public_pem(new_private_key()),
            "retire_previous_at": datetime.now(UTC).isoformat(),
        },
        idempotency_key=secrets.token_hex(8),
    )
    assert rotated.status_code == 201, rotated.text
    # The token still binds the old key and has not expired; the key has been retired.
    refused = _evidence_write(client, evidence_http)
    assert refused.status_code == 401
    assert refused.json()["code"] == "unauthorized"
    assert _api_read(client).status_code == 401
