"""Every endpoint of API.md's "Ledger" section, as written, with its problem codes."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from app.entrypoints import worker
from app.entrypoints.devstack import Stack
from tests.integration.ledger.helpers import (
    balances,
    code,
    key,
    leg,
    open_account,
    transfer,
)

WRITE = ["ledger:write", "ledger:read"]


@pytest.fixture(scope="module")
def client(client_factory: Any) -> Any:
    return client_factory(scopes=WRITE)


@pytest.fixture
def funded(client: Any) -> tuple[str, str]:
    """A fresh wallet holding 10_000 (credit-normal, no overdraft) and its funding source."""
    source = open_account(client, overdraft_limit_minor=None)["id"]
    wallet = open_account(client)["id"]
    assert transfer(client, source, wallet, 10_000).status_code == 201
    return source, wallet


def _db(stack: Stack) -> psycopg.Connection[Any]:
    assert stack.database_url is not None
    return psycopg.connect(stack.database_url, autocommit=True)


def _counts(stack: Stack) -> tuple[int, int, int]:
    with _db(stack) as connection:
        row = connection.execute(
            "SELECT (SELECT count(*) FROM ledger.postings),"
            " (SELECT count(*) FROM ledger.transactions),"
            " (SELECT count(*) FROM ledger.journal_entries)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def _problem(response: Any, status: int, problem_code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == problem_code


# ---- accounts ---------------------------------------------------------------------------


def test_account_is_created_with_defaults_when_optional_fields_are_left_out(client: Any) -> None:
    body = {"code": code(), "currency": "JPY", "normal_balance": "debit"}
    response = client.post("/v1/ledger/accounts", json=body, idempotency_key=key())
    assert response.status_code == 201
    account = response.json()
    assert account["id"].startswith("acc_")
    assert account["overdraft_limit_minor"] == 0
    assert account["currency_exponent"] == 0
    assert account["customer_id"] is None
    assert account["balances"] == {
        "posted": 0,
        "pending_debits": 0,
        "pending_credits": 0,
        "available": 0,
    }
    read = client.get(f"/v1/ledger/accounts/{account['id']}")
    assert read.status_code == 200
    assert read.json()["currency"] == "JPY"


def test_account_keeps_customer_and_metadata_when_given(client: Any) -> None:
    body = {
        "code": code(),
        "currency": "BHD",
        "normal_balance": "credit",
        "overdraft_limit_minor": None,
        "customer_id": "cus_123",
        "metadata": {"purpose": "settlement"},
    }
    account = client.post("/v1/ledger/accounts", json=body, idempotency_key=key()).json()
    assert account["overdraft_limit_minor"] is None
    assert account["currency_exponent"] == 3
    assert account["customer_id"] == "cus_123"
    assert account["metadata"] == {"purpose": "settlement"}


def test_duplicate_code_is_409_when_the_code_exists(client: Any) -> None:
    body = {"code": code(), "currency": "USD", "normal_balance": "credit"}
    assert client.post("/v1/ledger/accounts", json=body, idempotency_key=key()).status_code == 201
    again = client.post("/v1/ledger/accounts", json=body, idempotency_key=key())
    _problem(again, 409, "duplicate_account_code")


def test_unknown_currency_is_422_unknown_currency_when_code_is_not_iso(client: Any) -> None:
    body = {"code": code(), "currency": "ABC", "normal_balance": "credit"}
    _problem(
        client.post("/v1/ledger/accounts", json=body, idempotency_key=key()),
        422,
        "unknown_currency",
    )
    body["currency"] = "XXX"  # ISO's "no currency" code has no minor unit
    _problem(
        client.post("/v1/ledger/accounts", json=body, idempotency_key=key()),
        422,
        "unknown_currency",
    )


@pytest.mark.parametrize(
    "change",
    [
        {"currency": "usd"},
        {"normal_balance": "both"},
        {"overdraft_limit_minor": -1},
        {"overdraft_limit_minor": 1.5},
        {"overdraft_limit_minor": "10"},
        {"overdraft_limit_minor": True},
        {"surprise": 1},
        {"metadata": {f"k{i}": "v" * 120 for i in range(40)}},
        {"code": ""},
    ],
)
def test_account_body_is_422_validation_error_when_a_field_is_wrong(
    client: Any, change: dict[str, Any]
) -> None:
    body = {"code": code(), "currency": "USD", "normal_balance": "credit", **change}
    _problem(
        client.post("/v1/ledger/accounts", json=body, idempotency_key=key()),
        422,
        "validation_error",
    )


def test_unknown_account_is_404_not_found(client: Any) -> None:
    _problem(client.get("/v1/ledger/accounts/acc_missing"), 404, "not_found")
    _problem(client.get("/v1/ledger/accounts/acc_missing/entries"), 404, "not_found")


# ---- posted transactions ----------------------------------------------------------------


def test_posted_transfer_moves_both_balances_when_funds_suffice(
    client: Any, funded: tuple[str, str]
) -> None:
    source, wallet = funded
    target = open_account(client)["id"]
    response = transfer(client, wallet, target, 2_500, description="rent", external_ref="r-1")
    assert response.status_code == 201
    txn = response.json()
    assert txn["id"].startswith("txn_")
    assert txn["status"] == "posted"
    assert txn["description"] == "rent"
    assert txn["external_ref"] == "r-1"
    assert txn["reverses"] is None
    assert txn["reversed_by"] is None
    assert balances(client, wallet)["posted"] == 7_500
    assert balances(client, target) == {
        "posted": 2_500,
        "pending_debits": 0,
        "pending_credits": 0,
        "available": 2_500,
    }
    assert balances(client, source)["posted"] == -10_000
    read = client.get(f"/v1/ledger/transactions/{txn['id']}")
    assert read.status_code == 200
    assert read.json()["postings"] == txn["postings"]


def test_multi_currency_transaction_balances_per_currency(client: Any) -> None:
    usd_in = open_account(client, overdraft_limit_minor=None)["id"]
    usd_out = open_account(client)["id"]
    eur_in = open_account(client, currency="EUR", overdraft_limit_minor=None)["id"]
    eur_out = open_account(client, currency="EUR")["id"]
    body = {
        "status": "posted",
        "postings": [
            leg(usd_in, "debit", 100),
            leg(usd_out, "credit", 100),
            leg(eur_in, "debit", 90, "EUR"),
            leg(eur_out, "credit", 90, "EUR"),
        ],
    }
    assert (
        client.post("/v1/ledger/transactions", json=body, idempotency_key=key()).status_code == 201
    )
    body["postings"][3] = leg(eur_out, "credit", 91, "EUR")
    response = client.post("/v1/ledger/transactions", json=body, idempotency_key=key())
    _problem(response, 422, "unbalanced_transaction")


@pytest.mark.parametrize(
    "amount",
    [1.5, 100.0, "100", True, 0, -5, 2**63, None],
    ids=["float", "float-integral", "string", "bool", "zero", "negative", "too-big", "null"],
)
def test_amount_is_422_and_nothing_written_when_not_a_positive_integer(
    client: Any, funded: tuple[str, str], stack: Stack, amount: Any
) -> None:
    source, wallet = funded
    before = _counts(stack)
    body = {
        "status": "posted",
        "postings": [leg(wallet, "debit", 10), leg(source, "credit", 10)],
    }
    body["postings"][0]["amount_minor"] = amount
    body["postings"][1]["amount_minor"] = amount
    response = client.post("/v1/ledger/transactions", json=body, idempotency_key=key())
    _problem(response, 422, "validation_error")
    assert _counts(stack) == before
    assert balances(client, wallet)["posted"] == 10_000


def test_largest_amount_is_accepted_when_it_is_2_pow_63_minus_1(client: Any) -> None:
    source = open_account(client, overdraft_limit_minor=None)["id"]
    target = open_account(client)["id"]
    response = transfer(client, source, target, 2**63 - 1)
    assert response.status_code == 201, response.text
    assert balances(client, target)["posted"] == 2**63 - 1
    # A second one pushes the balance past bigint: balances are numeric, so no overflow.
    assert transfer(client, source, target, 2**63 - 1).status_code == 201
    assert balances(client, target)["posted"] == 2 * (2**63 - 1)


@pytest.mark.parametrize(
    ("mutate", "status", "problem_code"),
    [
        (lambda b: b["postings"].pop(), 422, "validation_error"),
        (lambda b: b.update(postings=b["postings"] * 51), 422, "validation_error"),
        (lambda b: b["postings"][0].update(currency="ZZZ"), 422, "unknown_currency"),
        (lambda b: b["postings"][1].update(amount_minor=9), 422, "unbalanced_transaction"),
        (lambda b: b["postings"][0].update(direction="credit"), 422, "unbalanced_transaction"),
        (lambda b: b["postings"][0].update(account_id="acc_nope"), 422, "unknown_account"),
        (lambda b: b["postings"][0].update(amount_minor=10_001), 422, "unbalanced_transaction"),
        (lambda b: b.update(status="voided"), 422, "validation_error"),
        (lambda b: b.update(extra=1), 422, "validation_error"),
        (lambda b: b["postings"][0].update(memo="x"), 422, "validation_error"),
        (lambda b: b.update(expires_at="2999-01-01T00:00:00Z"), 422, "validation_error"),
    ],
    ids=[
        "one-posting",
        "too-many-postings",
        "unknown-currency",
        "unbalanced-amount",
        "unbalanced-direction",
        "unknown-account",
        "one-side-larger",
        "bad-status",
        "unknown-field",
        "unknown-posting-field",
        "expiry-on-posted",
    ],
)
def test_transaction_is_refused_and_leaves_no_trace_when_invalid(
    client: Any,
    funded: tuple[str, str],
    stack: Stack,
    mutate: Any,
    status: int,
    problem_code: str,
) -> None:
    _, wallet = funded
    target = open_account(client)["id"]
    body: dict[str, Any] = {
        "status": "posted",
        "postings": [leg(wallet, "debit", 10), leg(target, "credit", 10)],
    }
    mutate(body)
    before = _counts(stack)
    response = client.post("/v1/ledger/transactions", json=body, idempotency_key=key())
    _problem(response, status, problem_code)
    assert _counts(stack) == before
    assert balances(client, wallet)["posted"] == 10_000


def test_currency_mismatch_is_422_when_a_leg_currency_differs_from_its_account(
    client: Any, funded: tuple[str, str], stack: Stack
) -> None:
    _, wallet = funded
    eur = open_account(client, currency="EUR", overdraft_limit_minor=None)["id"]
    eur_target = open_account(client, currency="EUR")["id"]
    before = _counts(stack)
    body = {
        "status": "posted",
        "postings": [leg(wallet, "debit", 10, "EUR"), leg(eur_target, "credit", 10, "EUR")],
    }
    response = client.post("/v1/ledger/transactions", json=body, idempotency_key=key())
    _problem(response, 422, "currency_mismatch")
    assert _counts(stack) == before
    assert balances(client, eur)["posted"] == 0


def test_insufficient_funds_is_422_when_debit_passes_the_overdraft_limit(
    client: Any, stack: Stack
) -> None:
    source = open_account(client, overdraft_limit_minor=None)["id"]
    wallet = open_account(client, overdraft_limit_minor=500)["id"]
    target = open_account(client)["id"]
    assert transfer(client, source, wallet, 1_000).status_code == 201
    assert transfer(client, wallet, target, 1_500).status_code == 201  # exactly at -500
    before = _counts(stack)
    _problem(transfer(client, wallet, target, 1), 422, "insufficient_funds")
    assert _counts(stack) == before
    assert balances(client, wallet) == {
        "posted": -500,
        "pending_debits": 0,
        "pending_credits": 0,
        "available": -500,
    }


def test_debit_normal_account_grows_with_debits_and_is_limited_by_credits(client: Any) -> None:
    cash = open_account(client, normal_balance="debit")["id"]
    equity = open_account(client, overdraft_limit_minor=None)["id"]
    body = {"status": "posted", "postings": [leg(cash, "debit", 300), leg(equity, "credit", 300)]}
    assert (
        client.post("/v1/ledger/transactions", json=body, idempotency_key=key()).status_code == 201
    )
    assert balances(client, cash)["posted"] == 300
    body = {"status": "posted", "postings": [leg(cash, "credit", 301), leg(equity, "debit", 301)]}
    response = client.post("/v1/ledger/transactions", json=body, idempotency_key=key())
    _problem(response, 422, "insufficient_funds")


# ---- pending transactions ---------------------------------------------------------------


def _soon(seconds: int = 3600) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def test_pending_transaction_holds_funds_and_posts_in_full(
    client: Any, funded: tuple[str, str]
) -> None:
    _, wallet = funded
    target = open_account(client)["id"]
    response = transfer(client, wallet, target, 4_000, status="pending", expires_at=_soon())
    assert response.status_code == 201
    txn = response.json()
    assert txn["status"] == "pending"
    assert txn["expires_at"].endswith("Z")
    assert balances(client, wallet) == {
        "posted": 10_000,
        "pending_debits": 4_000,
        "pending_credits": 0,
        "available": 6_000,
    }
    # The hold counts against the limit: 6_001 more would overdraw.
    _problem(transfer(client, wallet, target, 6_001), 422, "insufficient_funds")
    posted = client.post(f"/v1/ledger/transactions/{txn['id']}/post", idempotency_key=key())
    assert posted.status_code == 200, posted.text
    assert posted.json()["status"] == "posted"
    assert balances(client, wallet) == {
        "posted": 6_000,
        "pending_debits": 0,
        "pending_credits": 0,
        "available": 6_000,
    }
    assert balances(client, target)["posted"] == 4_000
    again = client.post(f"/v1/ledger/transactions/{txn['id']}/post", idempotency_key=key())
    _problem(again, 409, "invalid_state")
    _problem(
        client.post(f"/v1/ledger/transactions/{txn['id']}/void", idempotency_key=key()),
        409,
        "invalid_state",
    )


def test_pending_expires_7_days_after_creation_when_expires_at_is_left_out(
    client: Any, funded: tuple[str, str]
) -> None:
    _, wallet = funded
    target = open_account(client)["id"]
    response = transfer(client, wallet, target, 25, status="pending")
    assert response.status_code == 201, response.text
    txn = response.json()
    created = datetime.fromisoformat(txn["created_at"])
    assert datetime.fromisoformat(txn["expires_at"]) - created == timedelta(days=7)
    read = client.get(f"/v1/ledger/transactions/{txn['id']}").json()
    assert read["status"] == "pending"
    assert read["expires_at"] == txn["expires_at"]
    assert balances(client, wallet)["available"] == 10_000 - 25


def test_pending_is_422_when_expires_at_lies_more_than_366_days_ahead(
    client: Any, funded: tuple[str, str], stack: Stack
) -> None:
    _, wallet = funded
    target = open_account(client)["id"]
    before = _counts(stack)
    too_far = (datetime.now(UTC) + timedelta(days=366, minutes=5)).isoformat()
    _problem(
        transfer(client, wallet, target, 1, status="pending", expires_at=too_far),
        422,
        "validation_error",
    )
    assert _counts(stack) == before
    in_range = (datetime.now(UTC) + timedelta(days=365)).isoformat()
    assert (
        transfer(client, wallet, target, 1, status="pending", expires_at=in_range).status_code
        == 201
    )


def test_pending_needs_expires_at_in_the_future(client: Any, funded: tuple[str, str]) -> None:
    _, wallet = funded
    target = open_account(client)["id"]
    past = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    _problem(
        transfer(client, wallet, target, 1, status="pending", expires_at=past),
        422,
        "validation_error",
    )
    _problem(
        transfer(client, wallet, target, 1, status="pending", expires_at="tomorrow"),
        422,
        "validation_error",
    )


def test_partial_post_posts_the_amount_on_both_legs_and_releases_the_rest(
    client: Any, funded: tuple[str, str]
) -> None:
    _, wallet = funded
    target = open_account(client)["id"]
    txn = transfer(client, wallet, target, 3_000, status="pending", expires_at=_soon()).json()
    over = client.post(
        f"/v1/ledger/transactions/{txn['id']}/post",
        json={"amount_minor": 3_001},
        idempotency_key=key(),
    )
    _problem(over, 422, "validation_error")
    response = client.post(
        f"/v1/ledger/transactions/{txn['id']}/post",
        json={"amount_minor": 1_200},
        idempotency_key=key(),
    )
    assert response.status_code == 200, response.text
    assert response.json()["posted_amount_minor"] == 1_200
    assert balances(client, wallet) == {
        "posted": 8_800,
        "pending_debits": 0,
        "pending_credits": 0,
        "available": 8_800,
    }
    assert balances(client, target)["posted"] == 1_200


def test_partial_post_is_422_when_the_transaction_has_more_than_two_postings(
    client: Any, funded: tuple[str, str]
) -> None:
    _, wallet = funded
    first = open_account(client)["id"]
    second = open_account(client)["id"]
    body = {
        "status": "pending",
        "expires_at": _soon(),
        "postings": [leg(wallet, "debit", 30), leg(first, "credit", 10), leg(second, "credit", 20)],
    }
    txn = client.post("/v1/ledger/transactions", json=body, idempotency_key=key()).json()
    response = client.post(
        f"/v1/ledger/transactions/{txn['id']}/post", json={"amount_minor": 5}, idempotency_key=key()
    )
    _problem(response, 422, "partial_post_unsupported")
    full = client.post(f"/v1/ledger/transactions/{txn['id']}/post", idempotency_key=key())
    assert full.status_code == 200
    assert balances(client, second)["posted"] == 20


def test_void_releases_the_hold_once(client: Any, funded: tuple[str, str]) -> None:
    _, wallet = funded
    target = open_account(client)["id"]
    txn = transfer(client, wallet, target, 2_000, status="pending", expires_at=_soon()).json()
    response = client.post(f"/v1/ledger/transactions/{txn['id']}/void", idempotency_key=key())
    assert response.status_code == 200
    assert response.json()["status"] == "voided"
    assert balances(client, wallet)["available"] == 10_000
    assert balances(client, target)["pending_credits"] == 0
    _problem(
        client.post(f"/v1/ledger/transactions/{txn['id']}/void", idempotency_key=key()),
        409,
        "invalid_state",
    )
    _problem(
        client.post(f"/v1/ledger/transactions/{txn['id']}/post", idempotency_key=key()),
        409,
        "invalid_state",
    )
    assert client.get(f"/v1/ledger/transactions/{txn['id']}").json()["status"] == "voided"


def test_post_is_409_transaction_expired_and_worker_releases_the_hold_after_expiry(
    client: Any, funded: tuple[str, str], settings: Any
) -> None:
    _, wallet = funded
    target = open_account(client)["id"]
    txn = transfer(client, wallet, target, 1_000, status="pending", expires_at=_soon(1)).json()
    time.sleep(1.2)
    response = client.post(f"/v1/ledger/transactions/{txn['id']}/post", idempotency_key=key())
    _problem(response, 409, "transaction_expired")
    assert balances(client, wallet)["pending_debits"] == 1_000  # refused: nothing changed

    report = asyncio.run(worker.run_once(settings))
    assert report.holds_expired >= 1
    assert client.get(f"/v1/ledger/transactions/{txn['id']}").json()["status"] == "expired"
    assert balances(client, wallet)["available"] == 10_000
    for action in ("post", "void"):
        _problem(
            client.post(f"/v1/ledger/transactions/{txn['id']}/{action}", idempotency_key=key()),
            409,
            "transaction_expired",
        )


def test_unknown_transaction_is_404_for_read_post_void_and_reverse(client: Any) -> None:
    _problem(client.get("/v1/ledger/transactions/txn_missing"), 404, "not_found")
    for action in ("post", "void", "reverse"):
        response = client.post(
            f"/v1/ledger/transactions/txn_missing/{action}", idempotency_key=key()
        )
        _problem(response, 404, "not_found")


# ---- reversals --------------------------------------------------------------------------


def test_reverse_creates_a_mirror_and_the_original_shows_reversed_by(
    client: Any, funded: tuple[str, str], stack: Stack
) -> None:
    _, wallet = funded
    target = open_account(client)["id"]
    original = transfer(client, wallet, target, 700).json()
    response = client.post(
        f"/v1/ledger/transactions/{original['id']}/reverse", idempotency_key=key()
    )
    assert response.status_code == 201, response.text
    mirror = response.json()
    assert mirror["id"] != original["id"]
    assert mirror["reverses"] == original["id"]
    assert mirror["status"] == "posted"
    assert [p["direction"] for p in mirror["postings"]] == ["credit", "debit"]
    assert balances(client, wallet)["posted"] == 10_000
    assert balances(client, target)["posted"] == 0
    reread = client.get(f"/v1/ledger/transactions/{original['id']}").json()
    assert reread["reversed_by"] == mirror["id"]
    assert reread["status"] == "posted"
    assert reread["postings"] == original["postings"]
    again = client.post(f"/v1/ledger/transactions/{original['id']}/reverse", idempotency_key=key())
    _problem(again, 409, "invalid_state")


def test_reverse_is_409_when_the_transaction_is_still_pending(
    client: Any, funded: tuple[str, str]
) -> None:
    _, wallet = funded
    target = open_account(client)["id"]
    txn = transfer(client, wallet, target, 5, status="pending", expires_at=_soon()).json()
    response = client.post(f"/v1/ledger/transactions/{txn['id']}/reverse", idempotency_key=key())
    _problem(response, 409, "invalid_state")


def test_reverse_of_a_partially_posted_hold_mirrors_the_posted_amount(
    client: Any, funded: tuple[str, str]
) -> None:
    _, wallet = funded
    target = open_account(client)["id"]
    txn = transfer(client, wallet, target, 900, status="pending", expires_at=_soon()).json()
    client.post(
        f"/v1/ledger/transactions/{txn['id']}/post",
        json={"amount_minor": 400},
        idempotency_key=key(),
    )
    mirror = client.post(f"/v1/ledger/transactions/{txn['id']}/reverse", idempotency_key=key())
    assert mirror.status_code == 201
    assert [p["amount_minor"] for p in mirror.json()["postings"]] == [400, 400]
    assert balances(client, wallet)["posted"] == 10_000


# ---- entries and as_of ------------------------------------------------------------------


def test_entries_are_paginated_oldest_first_with_the_running_balance(
    client: Any, funded: tuple[str, str]
) -> None:
    _, wallet = funded
    target = open_account(client)["id"]
    for amount in (100, 200, 300):
        assert transfer(client, wallet, target, amount).status_code == 201
    hold = transfer(client, wallet, target, 50, status="pending", expires_at=_soon()).json()
    first = client.get(f"/v1/ledger/accounts/{wallet}/entries", params={"limit": 2})
    assert first.status_code == 200
    page = first.json()
    assert [e["balance_after_minor"] for e in page["data"]] == [10_000, 9_900]
    assert page["next_cursor"] is not None
    rest = client.get(
        f"/v1/ledger/accounts/{wallet}/entries", params={"cursor": page["next_cursor"]}
    ).json()
    assert [e["balance_after_minor"] for e in rest["data"]] == [9_700, 9_400, 9_400]
    assert [e["effect"] for e in rest["data"]] == ["posted", "posted", "hold"]
    assert rest["data"][-1]["transaction_id"] == hold["id"]
    assert rest["next_cursor"] is None
    _problem(
        client.get(f"/v1/ledger/accounts/{wallet}/entries", params={"limit": 0}),
        422,
        "validation_error",
    )
    _problem(
        client.get(f"/v1/ledger/accounts/{wallet}/entries", params={"cursor": "garbage!"}),
        422,
        "validation_error",
    )


def test_as_of_returns_balances_at_that_time_and_zero_before_the_account_existed(
    client: Any,
) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    source = open_account(client, overdraft_limit_minor=None)["id"]
    wallet = open_account(client)["id"]
    assert transfer(client, source, wallet, 1_000).status_code == 201
    middle = datetime.now(UTC)
    time.sleep(0.01)
    assert transfer(client, source, wallet, 500).status_code == 201
    assert (
        transfer(client, wallet, source, 200, status="pending", expires_at=_soon()).status_code
        == 201
    )
    assert balances(client, wallet, as_of=before.isoformat())["posted"] == 0
    assert balances(client, wallet, as_of=middle.isoformat()) == {
        "posted": 1_000,
        "pending_debits": 0,
        "pending_credits": 0,
        "available": 1_000,
    }
    now = balances(client, wallet, as_of=datetime.now(UTC).isoformat())
    assert now == balances(client, wallet)
    assert now == {"posted": 1_500, "pending_debits": 200, "pending_credits": 0, "available": 1_300}
    _problem(
        client.get(f"/v1/ledger/accounts/{wallet}", params={"as_of": "2024-01-01T00:00:00"}),
        422,
        "validation_error",
    )


# ---- immutability, chain, outbox, auth --------------------------------------------------


def test_raw_sql_update_and_delete_on_postings_fail(
    client: Any, funded: tuple[str, str], stack: Stack
) -> None:
    _, wallet = funded
    with _db(stack) as connection:
        for statement in (
            "UPDATE ledger.postings SET amount_minor = amount_minor + 1 WHERE account_id = %s",
            "DELETE FROM ledger.postings WHERE account_id = %s",
            "UPDATE ledger.transactions SET description = 'x' WHERE id IN"
            " (SELECT transaction_id FROM ledger.postings WHERE account_id = %s)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                connection.execute(statement, (wallet,))
    assert balances(client, wallet)["posted"] == 10_000


def test_verify_reports_ok_and_counts_every_entry(client: Any, funded: tuple[str, str]) -> None:
    response = client.get("/v1/ledger/verify")
    assert response.status_code == 200
    report = response.json()
    assert report["ok"] is True, report
    assert report["entries_checked"] >= 1
    assert "first_bad_entry" not in report


def test_verify_names_the_first_bad_entry_when_a_posting_is_tampered_with(
    client: Any, funded: tuple[str, str], stack: Stack
) -> None:
    _, wallet = funded
    target = open_account(client)["id"]
    victim = transfer(client, wallet, target, 111).json()
    assert transfer(client, wallet, target, 222).status_code == 201
    with _db(stack) as connection:
        seq = connection.execute(
            "SELECT seq FROM ledger.journal_entries WHERE transaction_id = %s", (victim["id"],)
        ).fetchone()
        assert seq is not None
        connection.execute("ALTER TABLE ledger.postings DISABLE TRIGGER USER")
        try:
            connection.execute(
                "UPDATE ledger.postings SET amount_minor = 11100"
                " WHERE transaction_id = %s AND account_id = %s",
                (victim["id"], target),
            )
            report = client.get("/v1/ledger/verify").json()
            assert report["ok"] is False
            assert report["first_bad_entry"]["seq"] == seq[0]
            assert report["first_bad_entry"]["transaction_id"] == victim["id"]
            assert report["first_bad_entry"]["reason"] == "hash_mismatch"
            assert report["entries_checked"] == seq[0] - 1
        finally:
            connection.execute(
                "UPDATE ledger.postings SET amount_minor = 111"
                " WHERE transaction_id = %s AND account_id = %s",
                (victim["id"], target),
            )
            connection.execute("ALTER TABLE ledger.postings ENABLE TRIGGER USER")
    assert client.get("/v1/ledger/verify").json()["ok"] is True


def test_outbox_gets_the_event_in_the_same_transaction(
    client: Any, funded: tuple[str, str], stack: Stack
) -> None:
    _, wallet = funded
    target = open_account(client)["id"]
    txn = transfer(client, wallet, target, 42).json()
    refused = transfer(client, wallet, target, 10**9)
    assert refused.status_code == 422
    with _db(stack) as connection:
        rows = connection.execute(
            "SELECT event_type, event_version, payload FROM platform.outbox"
            " WHERE aggregate_id = %s",
            (txn["id"],),
        ).fetchall()
        refused_events = connection.execute(
            "SELECT count(*) FROM platform.outbox"
            " WHERE payload::text LIKE %s AND event_type = 'ledger.transaction.posted'",
            (f"%{target}%1000000000%",),
        ).fetchone()
    assert [(row[0], row[1]) for row in rows] == [("ledger.transaction.posted", 1)]
    payload = rows[0][2] if isinstance(rows[0][2], dict) else json.loads(rows[0][2])
    assert payload["postings"][1] == leg(target, "credit", 42)
    assert refused_events == (0,)


def test_requests_without_scope_are_403_and_without_token_401(
    client_factory: Any, client: Any
) -> None:
    reader = client_factory(scopes=["ledger:read"])
    body = {"code": code(), "currency": "USD", "normal_balance": "credit"}
    _problem(reader.post("/v1/ledger/accounts", json=body, idempotency_key=key()), 403, "forbidden")
    nobody = client_factory(scopes=["payments:read"])
    _problem(nobody.get("/v1/ledger/verify"), 403, "forbidden")
    _problem(client.http.get("/v1/ledger/verify"), 401, "unauthorized")
    unsigned = client.http.post(
        "/v1/ledger/accounts",
        json=body,
        headers={"Authorization": f"Bearer {client.token()}", "Idempotency-Key": key()},
    )
    assert unsigned.status_code == 401


def test_post_records_a_status_change_row_and_leaves_the_original_rows_unchanged(
    client: Any, funded: tuple[str, str], stack: Stack
) -> None:
    _, wallet = funded
    target = open_account(client)["id"]
    txn = transfer(client, wallet, target, 300, status="pending", expires_at=_soon()).json()
    assert (
        client.post(f"/v1/ledger/transactions/{txn['id']}/post", idempotency_key=key()).status_code
        == 200
    )
    with _db(stack) as connection:
        stored = connection.execute(
            "SELECT status FROM ledger.transactions WHERE id = %s", (txn["id"],)
        ).fetchall()
        changes = connection.execute(
            "SELECT status FROM ledger.transaction_status_changes WHERE transaction_id = %s",
            (txn["id"],),
        ).fetchall()
        effects = connection.execute(
            "SELECT effect, amount_minor FROM ledger.postings"
            " WHERE transaction_id = %s AND account_id = %s ORDER BY id",
            (txn["id"], wallet),
        ).fetchall()
    assert stored == [("pending",)]
    assert changes == [("posted",)]
    assert effects == [("hold", 300), ("release", 300), ("posted", 300)]


def test_openapi_lists_every_ledger_operation_with_its_problem_codes(client: Any) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/ledger/accounts"]) == {"post"}
    assert set(paths["/v1/ledger/accounts/{id}"]) == {"get"}
    assert set(paths["/v1/ledger/accounts/{id}/entries"]) == {"get"}
    assert set(paths["/v1/ledger/transactions"]) == {"post"}
    assert set(paths["/v1/ledger/transactions/{id}"]) == {"get"}
    for action in ("post", "void", "reverse"):
        assert set(paths[f"/v1/ledger/transactions/{{id}}/{action}"]) == {"post"}
    assert set(paths["/v1/ledger/verify"]) == {"get"}
    create = paths["/v1/ledger/transactions"]["post"]
    assert {"unbalanced_transaction", "currency_mismatch", "insufficient_funds"} <= set(
        create["x-error-codes"]
    )
    assert "duplicate_account_code" in paths["/v1/ledger/accounts"]["post"]["x-error-codes"]


def test_transaction_is_refused_with_422_and_nothing_written_when_a_string_holds_u0000(
    client: Any, funded: tuple[str, str], stack: Stack
) -> None:
    """JSON may escape U+0000 (and a lone surrogate: tests/unit/test_jsonbody.py);
    PostgreSQL stores neither. The request is a 422 validation_error, not a 500 from the
    database, and nothing is written."""
    source, wallet = funded
    before = _counts(stack)
    response = transfer(client, source, wallet, 5, description="before\u0000after")
    _problem(response, 422, "validation_error")
    assert _counts(stack) == before
    assert balances(client, wallet)["posted"] == 10_000
