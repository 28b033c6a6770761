"""`POST /v1/ledger/transactions/batch`: all or nothing, each item as a single create."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from app.entrypoints.devstack import Stack
from tests.integration.ledger.helpers import balances, key, leg, open_account, transfer

WRITE = ["ledger:write", "ledger:read"]
BATCH = "/v1/ledger/transactions/batch"


@pytest.fixture(scope="module")
def client(client_factory: Any) -> Any:
    return client_factory(scopes=WRITE)


@pytest.fixture
def funded(client: Any) -> tuple[str, str]:
    source = open_account(client, overdraft_limit_minor=None)["id"]
    wallet = open_account(client)["id"]
    assert transfer(client, source, wallet, 10_000).status_code == 201
    return source, wallet


def _db(stack: Stack) -> psycopg.Connection[Any]:
    assert stack.database_url is not None
    return psycopg.connect(stack.database_url, autocommit=True)


def _traces(stack: Stack) -> dict[str, int]:
    """Every table a create writes to, counted."""
    with _db(stack) as connection:
        row = connection.execute(
            "SELECT (SELECT count(*) FROM ledger.transactions),"
            " (SELECT count(*) FROM ledger.postings),"
            " (SELECT count(*) FROM ledger.journal_entries),"
            " (SELECT count(*) FROM ledger.open_holds),"
            " (SELECT count(*) FROM platform.outbox WHERE event_type LIKE 'ledger.transaction.%'),"
            " (SELECT count(*) FROM platform.audit_log"
            "   WHERE event_type = 'ledger.transactions.create' AND outcome = 'success')"
        ).fetchone()
    assert row is not None
    names = ("transactions", "postings", "journal", "holds", "outbox", "audit")
    return dict(zip(names, (int(value) for value in row), strict=True))


def _move(source: str, target: str, amount_minor: int, **extra: Any) -> dict[str, Any]:
    return {
        "status": "posted",
        "postings": [leg(source, "debit", amount_minor), leg(target, "credit", amount_minor)],
        **extra,
    }


def test_batch_writes_every_item_in_order_like_single_creates_when_all_are_valid(
    client: Any, funded: tuple[str, str], stack: Stack
) -> None:
    _, wallet = funded
    targets = [open_account(client)["id"] for _ in range(3)]
    before = _traces(stack)
    items = [
        _move(wallet, targets[0], 100, external_ref="first"),
        {**_move(wallet, targets[1], 200), "status": "pending"},
        _move(wallet, targets[2], 300, description="third"),
    ]
    response = client.post(BATCH, json={"transactions": items}, idempotency_key=key())
    assert response.status_code == 201, response.text
    created = response.json()["transactions"]
    assert [t["status"] for t in created] == ["posted", "pending", "posted"]
    assert created[0]["external_ref"] == "first"
    assert created[2]["description"] == "third"
    assert created[1]["expires_at"] is not None
    for transaction in created:
        read = client.get(f"/v1/ledger/transactions/{transaction['id']}")
        assert read.json() == transaction
    assert balances(client, targets[0])["posted"] == 100
    assert balances(client, targets[1])["pending_credits"] == 200
    assert balances(client, wallet) == {
        "posted": 10_000 - 400,
        "pending_debits": 200,
        "pending_credits": 0,
        "available": 10_000 - 600,
    }
    after = _traces(stack)
    assert after["transactions"] - before["transactions"] == 3
    assert after["postings"] - before["postings"] == 6
    assert after["journal"] - before["journal"] == 3
    assert after["holds"] - before["holds"] == 1
    assert after["outbox"] - before["outbox"] == 3
    assert after["audit"] - before["audit"] == 3
    with _db(stack) as connection:
        chained = connection.execute(
            "SELECT transaction_id FROM ledger.journal_entries"
            " WHERE transaction_id = ANY(%s) ORDER BY seq",
            ([t["id"] for t in created],),
        ).fetchall()
    assert [row[0] for row in chained] == [t["id"] for t in created]
    assert client.get("/v1/ledger/verify").json()["ok"] is True


def _overdraw(items: list[dict[str, Any]], wallet: str, target: str) -> None:
    items[57] = _move(wallet, target, 1_000_000)


def _unknown_account(items: list[dict[str, Any]], wallet: str, target: str) -> None:
    items[57] = _move(wallet, "acc_does_not_exist", 1)


def _unbalanced(items: list[dict[str, Any]], wallet: str, target: str) -> None:
    items[57]["postings"][1]["amount_minor"] = 2


def _bad_field(items: list[dict[str, Any]], wallet: str, target: str) -> None:
    items[57]["memo"] = "not a field"


@pytest.mark.parametrize(
    ("spoil", "problem_code"),
    [
        (_overdraw, "insufficient_funds"),
        (_unknown_account, "unknown_account"),
        (_unbalanced, "unbalanced_transaction"),
        (_bad_field, "validation_error"),
    ],
    ids=["overdraft", "unknown-account", "unbalanced", "schema"],
)
def test_batch_is_422_naming_index_57_and_leaves_nothing_when_item_57_fails(
    client: Any,
    funded: tuple[str, str],
    stack: Stack,
    spoil: Callable[[list[dict[str, Any]], str, str], None],
    problem_code: str,
) -> None:
    _, wallet = funded
    target = open_account(client)["id"]
    items = [_move(wallet, target, 1) for _ in range(100)]
    spoil(items, wallet, target)
    before = _traces(stack)
    response = client.post(BATCH, json={"transactions": items}, idempotency_key=key())
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == problem_code
    assert problem["index"] == 57
    assert _traces(stack) == before
    assert balances(client, wallet)["posted"] == 10_000
    assert balances(client, target)["posted"] == 0


def test_batch_is_422_when_it_holds_no_item_or_more_than_1000(client: Any) -> None:
    for count in (0, 1001):
        body = {"transactions": [{"status": "posted", "postings": []}] * count}
        response = client.post(BATCH, json=body, idempotency_key=key())
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "validation_error"


def test_concurrent_batches_on_shared_accounts_all_land_and_keep_the_books_exact(
    client: Any, funded: tuple[str, str], stack: Stack
) -> None:
    source, _ = funded
    hubs = [open_account(client)["id"] for _ in range(4)]

    # Every batch moves money from the unlimited source to all hubs and between hubs, in
    # different orders, so concurrent batches lock overlapping accounts.
    def batch(seed: int) -> Any:
        items = [_move(source, hubs[(seed + i) % 4], 10) for i in range(20)]
        items += [_move(hubs[(seed + i) % 4], hubs[(seed + i + 1) % 4], 1) for i in range(5)]
        return client.post(BATCH, json={"transactions": items}, idempotency_key=key())

    client.get(f"/v1/ledger/accounts/{source}")  # fetch the token before the threads race
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(batch, range(12)))
    assert [r.status_code for r in responses] == [201] * 12, [r.text for r in responses]
    total = sum(balances(client, hub)["posted"] for hub in hubs)
    assert total == 12 * 20 * 10
    assert client.get("/v1/ledger/verify").json()["ok"] is True


def test_a_concurrent_duplicate_batch_gets_409_in_use_and_has_one_effect(
    client: Any, funded: tuple[str, str]
) -> None:
    _, wallet = funded
    target = open_account(client)["id"]
    body = {"transactions": [_move(wallet, target, 5) for _ in range(50)]}
    the_key = key()
    client.get(f"/v1/ledger/accounts/{target}")
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(
            pool.map(lambda _: client.post(BATCH, json=body, idempotency_key=the_key), range(8))
        )
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 409}, statuses
    assert 201 in statuses
    for response in responses:
        if response.status_code == 409:
            assert response.json()["code"] == "idempotency_key_in_use"
    assert balances(client, target)["posted"] == 250
