"""Group commit (platform/commit_groups.py) through the API: signed transfers whose effects
become ready together share one database transaction, and each keeps its own outcome."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from app.entrypoints.devstack import Stack
from tests.integration.ledger.helpers import balances, open_account, transfer

WRITE = ["ledger:write", "ledger:read"]
FUNDED_MINOR = 1_000


@pytest.fixture(scope="module")
def client(client_factory: Any) -> Any:
    return client_factory(scopes=WRITE)


def _funded(client: Any) -> str:
    source = open_account(client, overdraft_limit_minor=None)["id"]
    wallet = open_account(client)["id"]
    assert transfer(client, source, wallet, FUNDED_MINOR).status_code == 201
    return str(wallet)


def _database_transactions(stack: Stack, transaction_ids: list[str]) -> int:
    """How many database transactions wrote these ledger transactions (their rows' xmin)."""
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url) as connection:
        row = connection.execute(
            "SELECT count(DISTINCT xmin::text), count(*) FROM ledger.transactions"
            " WHERE id = ANY(%s)",
            (transaction_ids,),
        ).fetchone()
    assert row is not None
    assert row[1] == len(transaction_ids)
    return int(row[0])


def _concurrently(client: Any, moves: list[tuple[str, str, int]]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=len(moves)) as pool:
        return list(pool.map(lambda move: transfer(client, *move), moves))


def test_transfers_ready_together_commit_in_fewer_transactions_when_grouped(
    client: Any, stack: Stack
) -> None:
    wallet = _funded(client)
    target = open_account(client)["id"]
    rounds = [_concurrently(client, [(wallet, target, 1)] * 8) for _ in range(3)]
    responses = [response for round_ in rounds for response in round_]
    assert [r.status_code for r in responses] == [201] * 24, [r.text for r in responses]
    ids = [r.json()["id"] for r in responses]
    assert len(set(ids)) == 24
    # Each round's first transfer leads alone; the others that arrive while it is on the
    # wire queue behind it and commit together.
    assert _database_transactions(stack, ids) < 24
    assert balances(client, wallet)["posted"] == FUNDED_MINOR - 24
    assert balances(client, target)["posted"] == 24
    assert client.get("/v1/ledger/verify").json()["ok"] is True


def test_a_refused_transfer_fails_alone_and_the_others_commit_when_grouped(
    client: Any, stack: Stack
) -> None:
    wallet = _funded(client)
    empty = open_account(client)["id"]
    target = open_account(client)["id"]
    moves = [(wallet, target, 1)] * 4 + [(empty, target, 1)] + [(wallet, target, 1)] * 4
    responses = _concurrently(client, moves)
    statuses = [r.status_code for r in responses]
    assert statuses == [201] * 4 + [422] + [201] * 4, [r.text for r in responses]
    assert responses[4].json()["code"] == "insufficient_funds"
    assert balances(client, wallet)["posted"] == FUNDED_MINOR - 8
    assert balances(client, empty)["posted"] == 0
    assert balances(client, target)["posted"] == 8
    assert client.get("/v1/ledger/verify").json()["ok"] is True
