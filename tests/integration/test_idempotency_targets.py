"""An Idempotency-Key belongs to one client and one request target (issue 10, item 1).

The key used to be scoped by the route template, so the same key on another resource of
the same route replayed the first resource's answer and left the second untouched. Each
test here sends one key to two concrete targets of one route template over HTTP.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.ledger.helpers import open_account, transfer
from tests.support.api_client import ApiClient, ClientFactory

PII = {"name": "Grace Hopper", "email": "grace@example.org", "country": "US"}


def _key() -> str:
    return str(uuid.uuid4())


def _hold(client: ApiClient, source: str, target: str) -> str:
    expires_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    response = transfer(client, source, target, 100, status="pending", expires_at=expires_at)
    assert response.status_code == 201, response.text
    transaction_id: str = response.json()["id"]
    return transaction_id


@pytest.fixture(scope="module")
def ledger(client_factory: ClientFactory) -> ApiClient:
    return client_factory(scopes=["ledger:write", "ledger:read"])


def test_key_reused_on_another_hold_is_422_and_leaves_it_pending_when_voiding(
    ledger: ApiClient,
) -> None:
    source = open_account(ledger, overdraft_limit_minor=None)["id"]
    target = open_account(ledger)["id"]
    hold_a, hold_b = _hold(ledger, source, target), _hold(ledger, source, target)
    the_key = _key()

    first = ledger.post(f"/v1/ledger/transactions/{hold_a}/void", idempotency_key=the_key)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "voided"

    reused = ledger.post(f"/v1/ledger/transactions/{hold_b}/void", idempotency_key=the_key)
    assert reused.status_code == 422, reused.text
    assert reused.json()["code"] == "idempotency_key_reused"
    assert "idempotent-replayed" not in reused.headers
    assert ledger.get(f"/v1/ledger/transactions/{hold_b}").json()["status"] == "pending"

    # The key still replays on its own target.
    again = ledger.post(f"/v1/ledger/transactions/{hold_a}/void", idempotency_key=the_key)
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == hold_a


def test_key_reused_on_another_action_of_the_same_hold_is_422_when_posting(
    ledger: ApiClient,
) -> None:
    source = open_account(ledger, overdraft_limit_minor=None)["id"]
    target = open_account(ledger)["id"]
    hold = _hold(ledger, source, target)
    the_key = _key()
    assert (
        ledger.post(f"/v1/ledger/transactions/{hold}/void", idempotency_key=the_key).status_code
        == 200
    )
    posted = ledger.post(f"/v1/ledger/transactions/{hold}/post", idempotency_key=the_key)
    assert posted.status_code == 422
    assert posted.json()["code"] == "idempotency_key_reused"


def test_key_reused_on_another_client_is_422_and_leaves_it_enabled_when_disabling(
    client_factory: ClientFactory,
) -> None:
    admin = client_factory(scopes=["clients:admin"], name="target-admin")
    first_victim = client_factory(scopes=["kyc:write"])
    second_victim = client_factory(scopes=["kyc:write"])
    the_key = _key()

    first = admin.post(f"/v1/clients/{first_victim.client_id}/disable", idempotency_key=the_key)
    assert first.status_code == 200, first.text
    assert first.json()["disabled"] is True

    reused = admin.post(f"/v1/clients/{second_victim.client_id}/disable", idempotency_key=the_key)
    assert reused.status_code == 422, reused.text
    assert reused.json()["code"] == "idempotency_key_reused"
    assert admin.get(f"/v1/clients/{second_victim.client_id}").json()["disabled"] is False
    assert second_victim.post("/v1/customers", json=PII, idempotency_key=_key()).status_code == 201


def test_key_reused_on_another_customer_is_422_and_leaves_it_pending_when_deciding_kyc(
    client_factory: ClientFactory,
) -> None:
    kyc = client_factory(scopes=["kyc:write"])
    customers: list[dict[str, Any]] = []
    for _ in range(2):
        created = kyc.post("/v1/customers", json=PII, idempotency_key=_key())
        assert created.status_code == 201, created.text
        customers.append(created.json())
    first_id, second_id = customers[0]["id"], customers[1]["id"]
    decision = {"status": "verified"}
    the_key = _key()

    first = kyc.post(f"/v1/customers/{first_id}/kyc", json=decision, idempotency_key=the_key)
    assert first.status_code == 200, first.text

    reused = kyc.post(f"/v1/customers/{second_id}/kyc", json=decision, idempotency_key=the_key)
    assert reused.status_code == 422, reused.text
    assert reused.json()["code"] == "idempotency_key_reused"
    assert kyc.get(f"/v1/customers/{second_id}").json()["kyc_status"] == "pending"
