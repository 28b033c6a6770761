"""SignedClient against the real API: the token it caches and the signatures it makes are
accepted, and every write it sends carries an Idempotency-Key the server stored."""

from __future__ import annotations

from typing import Any

import psycopg
from starlette.testclient import TestClient

from app.entrypoints.devstack import Stack
from app.platform.client_credentials import ClientCredentials
from app.platform.signed_client import SignedClient
from tests.integration.ledger.helpers import code


def test_signed_client_writes_with_a_stored_idempotency_key_when_none_is_given(
    api: TestClient, client_factory: Any, stack: Stack
) -> None:
    made = client_factory(scopes=["ledger:write", "ledger:read"])
    credentials = ClientCredentials(
        made.client_id, made.client_secret, made.key_id, made.private_key
    )
    client = SignedClient(credentials, http=api)
    body = {"code": code(), "currency": "USD", "normal_balance": "credit"}

    created = client.post("/v1/ledger/accounts", json=body)
    read = client.get(f"/v1/ledger/accounts/{created.json()['id']}")
    unsigned = client.post("/v1/ledger/accounts", json=body, sign=False)

    assert created.status_code == 201, created.text
    assert read.status_code == 200
    assert unsigned.status_code == 401
    assert unsigned.json()["code"] == "signature_required"
    key = created.request.headers["idempotency-key"]
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        stored = connection.execute(
            "SELECT status, response_status FROM platform.idempotency_keys "
            "WHERE client_id = %s AND key = %s",
            (made.client_id, key),
        ).fetchall()
    assert stored == [("completed", 201)]
