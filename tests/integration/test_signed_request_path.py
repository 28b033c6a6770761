"""What the cheaper signed request path must still write for one posted transfer: the
nonce, the completed idempotency key, exactly one audit record with its OPA decision, and
a journal entry chained last (the chain verifies)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from app.entrypoints.devstack import Stack
from tests.integration.ledger.helpers import key, leg, open_account


@pytest.fixture(scope="module")
def client(client_factory: Any) -> Any:
    return client_factory(scopes=["ledger:write", "ledger:read"])


def _rows(stack: Stack, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        return connection.execute(sql, params).fetchall()


def test_posted_transfer_leaves_key_audit_nonce_and_chain_entry_when_it_succeeds(
    client: Any, stack: Stack
) -> None:
    source = open_account(client, overdraft_limit_minor=None)["id"]
    target = open_account(client)["id"]
    idempotency_key = key()
    body = {"status": "posted", "postings": [leg(source, "debit", 7), leg(target, "credit", 7)]}
    nonces_before = _rows(stack, "SELECT count(*) FROM platform.seen_nonces")[0][0]

    response = client.post("/v1/ledger/transactions", json=body, idempotency_key=idempotency_key)

    assert response.status_code == 201, response.text
    transaction_id = response.json()["id"]
    stored = _rows(
        stack,
        "SELECT status, response_status, claim_token FROM platform.idempotency_keys "
        "WHERE client_id = %s AND key = %s",
        client.client_id,
        idempotency_key,
    )
    assert stored == [("completed", 201, None)]
    audited = _rows(
        stack,
        "SELECT outcome, decision_id, request_id FROM platform.audit_log "
        "WHERE event_type = 'ledger.transactions.create' AND resource_id = %s",
        transaction_id,
    )
    assert len(audited) == 1
    assert audited[0][0] == "success"
    assert audited[0][1]
    assert audited[0][2] == response.headers["x-request-id"]
    assert _rows(stack, "SELECT count(*) FROM platform.seen_nonces")[0][0] > nonces_before
    chained = _rows(
        stack,
        "SELECT j.seq, h.last_seq FROM ledger.journal_entries j, ledger.chain_head h "
        "WHERE j.transaction_id = %s",
        transaction_id,
    )
    assert len(chained) == 1
    assert 1 <= chained[0][0] <= chained[0][1]
    verified = client.get("/v1/ledger/verify")
    assert verified.status_code == 200, verified.text
    assert verified.json()["ok"] is True


def test_replayed_transfer_is_not_written_twice_when_the_key_repeats(
    client: Any, stack: Stack
) -> None:
    source = open_account(client, overdraft_limit_minor=None)["id"]
    target = open_account(client)["id"]
    idempotency_key = key()
    body = {"status": "posted", "postings": [leg(source, "debit", 3), leg(target, "credit", 3)]}

    first = client.post("/v1/ledger/transactions", json=body, idempotency_key=idempotency_key)
    second = client.post("/v1/ledger/transactions", json=body, idempotency_key=idempotency_key)

    assert first.status_code == second.status_code == 201
    assert second.headers.get("idempotent-replayed") == "true"
    assert second.json()["id"] == first.json()["id"]
    audited = _rows(
        stack,
        "SELECT count(*) FROM platform.audit_log "
        "WHERE event_type = 'ledger.transactions.create' AND resource_id = %s",
        first.json()["id"],
    )
    assert audited == [(1,)]
