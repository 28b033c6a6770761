"""`GET /v1/ledger/verify`: balances recomputed from postings, and checks cut short."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from app.entrypoints.devstack import Stack
from tests.integration.ledger.helpers import balances, open_account, transfer

WRITE = ["ledger:write", "ledger:read"]


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


def test_verify_names_the_account_when_a_balance_row_is_updated_directly(
    client: Any, funded: tuple[str, str], stack: Stack
) -> None:
    _, wallet = funded
    target = open_account(client)["id"]
    assert transfer(client, wallet, target, 300).status_code == 201
    before = client.get("/v1/ledger/verify").json()
    assert before["ok"] is True, before
    assert before["accounts_checked"] >= 3
    with _db(stack) as connection:
        # The database superuser: what an operator with a console (or an attacker with
        # the owner's password) could do, bypassing the application.
        connection.execute(
            "UPDATE ledger.balances SET posted_minor = posted_minor + 5000 WHERE account_id = %s",
            (target,),
        )
        try:
            report = client.get("/v1/ledger/verify").json()
        finally:
            connection.execute(
                "UPDATE ledger.balances SET posted_minor = posted_minor - 5000"
                " WHERE account_id = %s",
                (target,),
            )
    assert report["ok"] is False
    assert "first_bad_entry" not in report  # the chain itself is intact
    bad = report["first_bad_balance"]
    assert bad["account_id"] == target
    assert bad["stored"]["posted"] == 5_300
    assert bad["recomputed"]["posted"] == 300
    assert balances(client, target)["posted"] == 300
    assert client.get("/v1/ledger/verify").json()["ok"] is True


def test_verify_says_incomplete_and_where_to_go_on_when_cut_short_by_its_limit(
    client: Any, funded: tuple[str, str]
) -> None:
    source, wallet = funded
    assert transfer(client, wallet, source, 10).status_code == 201
    first = client.get("/v1/ledger/verify", params={"limit": "2"}).json()
    assert first["ok"] is True, first
    assert first["complete"] is False
    assert first["entries_checked"] == 2
    assert first["accounts_checked"] == 2
    assert first["next_from_seq"] == 3
    assert first["next_cursor"] is not None
    entries, accounts, report = 2, 2, first
    for _ in range(1_000):
        if report["complete"]:
            break
        report = client.get(
            "/v1/ledger/verify", params={"limit": "500", "cursor": report["next_cursor"]}
        ).json()
        assert report["ok"] is True, report
        entries += report["entries_checked"]
        accounts += report["accounts_checked"]
    assert report["complete"] is True
    assert report["next_cursor"] is None
    whole = client.get("/v1/ledger/verify").json()
    assert whole["complete"] is True
    # The continuation checked each entry and each account once (other tests in this
    # process may only have added some since).
    assert first["entries_checked"] + 1 <= entries <= whole["entries_checked"]
    assert accounts <= whole["accounts_checked"]
    plain = client.get("/v1/ledger/verify", params={"from_seq": "2"}).json()
    assert plain["ok"] is True
    assert plain["entries_checked"] == whole["entries_checked"] - 1


def test_verify_is_422_when_from_seq_or_limit_is_not_a_positive_integer(client: Any) -> None:
    for params in ({"from_seq": "0"}, {"limit": "-1"}, {"limit": "x"}, {"cursor": "e30x"}):
        response = client.get("/v1/ledger/verify", params=params)
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "validation_error"
