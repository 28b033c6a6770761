"""Payments over HTTP on the real stack (uvicorn API, PostgreSQL, OPA, OpenBao, simulator),
with both providers: the happy paths, the ledger postings and API.md's error codes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.api_client import ClientFactory
from tests.support.payments import Merchant, Simulator, key, new_merchant

PROVIDERS = ("acme", "globex")


def _step_names(payment: dict[str, Any]) -> list[str]:
    return [step["name"] for step in payment["steps"]]


def _balanced(merchant: Merchant, transaction_id: str) -> bool:
    postings = merchant.transaction(transaction_id)["postings"]
    debits = sum(p["amount_minor"] for p in postings if p["direction"] == "debit")
    credits = sum(p["amount_minor"] for p in postings if p["direction"] == "credit")
    return bool(debits == credits > 0)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_automatic_capture_posts_the_charge_to_the_merchant_when_the_card_approves(
    merchant: Merchant, provider: str
) -> None:
    before = merchant.balance()["posted"]
    response = merchant.pay(1250, provider=provider)
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["status"] == "captured"
    assert (payment["captured_minor"], payment["refunded_minor"]) == (1250, 0)
    assert payment["provider"] == provider
    names = _step_names(payment)
    for name in ("risk_check", "route", "authorize", "ledger_hold", "capture", "ledger_capture"):
        assert name in names
    assert all(step["status"] == "succeeded" for step in payment["steps"])
    assert "release_remainder" not in names
    (hold,) = payment["ledger_transaction_ids"]
    assert merchant.transaction(hold)["status"] == "posted"
    assert _balanced(merchant, hold)
    assert merchant.balance()["posted"] == before + 1250
    again = merchant.payment(payment["id"])
    assert again["status"] == "captured"
    assert again["steps"][2]["provider_reference"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_partial_capture_releases_the_remainder_when_less_is_captured(
    merchant: Merchant, provider: str
) -> None:
    before = merchant.balance()
    authorized = merchant.pay(1000, provider=provider, capture="manual")
    assert authorized.status_code == 201, authorized.text
    payment = authorized.json()
    assert payment["status"] == "authorized"
    assert merchant.balance()["pending_credits"] == before["pending_credits"] + 1000
    captured = merchant.client.post(
        f"/v1/payments/{payment['id']}/capture", json={"amount_minor": 600}, idempotency_key=key()
    )
    assert captured.status_code == 200, captured.text
    body = captured.json()
    assert (body["status"], body["captured_minor"]) == ("captured", 600)
    release = [step for step in body["steps"] if step["name"] == "release_remainder"]
    assert len(release) == 1
    assert release[0]["amount_minor"] == 400
    after = merchant.balance()
    assert after["posted"] == before["posted"] + 600
    assert after["pending_credits"] == before["pending_credits"]
    hold = merchant.transaction(payment["ledger_transaction_ids"][0])
    assert (hold["status"], hold["posted_amount_minor"]) == ("posted", 600)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_several_partial_refunds_are_allowed_until_the_captured_amount_when_refunding(
    merchant: Merchant, provider: str
) -> None:
    payment = merchant.pay(1000, provider=provider).json()
    before = merchant.balance()["posted"]
    path = f"/v1/payments/{payment['id']}/refunds"
    first = merchant.client.post(path, json={"amount_minor": 300}, idempotency_key=key())
    assert first.status_code == 201, first.text
    assert first.json()["id"].startswith("ref_")
    assert (first.json()["status"], first.json()["amount_minor"]) == ("succeeded", 300)
    assert merchant.payment(payment["id"])["status"] == "partially_refunded"
    too_much = merchant.client.post(path, json={"amount_minor": 701}, idempotency_key=key())
    assert too_much.status_code == 422
    assert too_much.json()["code"] == "refund_exceeds_captured"
    second = merchant.client.post(path, json={"amount_minor": 700}, idempotency_key=key())
    assert second.status_code == 201, second.text
    final = merchant.payment(payment["id"])
    assert (final["status"], final["refunded_minor"]) == ("refunded", 1000)
    assert merchant.balance()["posted"] == before - 1000
    for transaction_id in final["ledger_transaction_ids"]:
        assert _balanced(merchant, transaction_id)
    more = merchant.client.post(path, json={"amount_minor": 1}, idempotency_key=key())
    assert more.status_code == 422
    assert more.json()["code"] == "refund_exceeds_captured"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_void_releases_the_hold_and_capture_then_gets_invalid_state_when_voided(
    merchant: Merchant, provider: str
) -> None:
    before = merchant.balance()
    payment = merchant.pay(500, provider=provider, capture="manual").json()
    voided = merchant.client.post(f"/v1/payments/{payment['id']}/void", idempotency_key=key())
    assert voided.status_code == 200, voided.text
    assert voided.json()["status"] == "voided"
    assert "ledger_release" in _step_names(voided.json())
    assert merchant.balance() == before
    assert merchant.transaction(payment["ledger_transaction_ids"][0])["status"] == "voided"
    capture = merchant.client.post(
        f"/v1/payments/{payment['id']}/capture", json={}, idempotency_key=key()
    )
    assert capture.status_code == 409
    assert capture.json()["code"] == "invalid_state"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_payout_debits_the_merchant_then_pays_out_when_funds_suffice(
    merchant: Merchant, provider: str
) -> None:
    merchant.pay(2000, provider=provider)
    before = merchant.balance()["posted"]
    body = {
        "account_id": merchant.account_ids["USD"],
        "amount_minor": 800,
        "currency": "USD",
        "destination": {"provider": provider, "bank_token": "btok_merchant"},
    }
    paid = merchant.client.post("/v1/payouts", json=body, idempotency_key=key())
    assert paid.status_code == 201, paid.text
    payout = paid.json()
    assert payout["id"].startswith("po_")
    assert payout["status"] == "paid"
    assert [step["name"] for step in payout["steps"]] == ["ledger_debit", "payout"]
    assert merchant.balance()["posted"] == before - 800
    assert _balanced(merchant, payout["ledger_transaction_ids"][0])
    too_much = {**body, "amount_minor": before * 10}
    refused = merchant.client.post("/v1/payouts", json=too_much, idempotency_key=key())
    assert refused.status_code == 422
    assert refused.json()["code"] == "insufficient_funds"
    assert merchant.balance()["posted"] == before - 800


def test_payout_is_reversed_when_the_provider_declines_the_bank_account(
    merchant: Merchant,
) -> None:
    merchant.pay(1000)
    before = merchant.balance()["posted"]
    body = {
        "account_id": merchant.account_ids["USD"],
        "amount_minor": 300,
        "currency": "USD",
        "destination": {"provider": "acme", "bank_token": "btok_decline"},
    }
    response = merchant.client.post("/v1/payouts", json=body, idempotency_key=key())
    assert response.status_code == 201, response.text
    payout = response.json()
    assert payout["status"] == "failed"
    assert ("ledger_debit", "compensated") in [(s["name"], s["status"]) for s in payout["steps"]]
    assert len(payout["ledger_transaction_ids"]) == 2
    assert merchant.balance()["posted"] == before


@pytest.mark.parametrize("provider", PROVIDERS)
def test_declined_card_gives_a_declined_payment_and_no_posting_when_the_provider_refuses(
    merchant: Merchant, provider: str
) -> None:
    before = merchant.balance()
    response = merchant.pay(700, provider=provider, token="tok_decline")
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["status"] == "declined"
    assert payment["ledger_transaction_ids"] == []
    assert merchant.balance() == before


def test_unverified_customer_gets_kyc_required_and_nothing_is_written_when_paying(
    merchant: Merchant,
) -> None:
    created = merchant.client.post(
        "/v1/customers",
        json={"name": "New Buyer", "email": "new@example.com", "country": "FR"},
        idempotency_key=key(),
    )
    unverified = Merchant(merchant.client, created.json()["id"], merchant.account_ids)
    response = unverified.pay(100)
    assert response.status_code == 422
    assert response.json()["code"] == "kyc_required"


def test_merchant_account_in_another_currency_gets_currency_mismatch_when_paying(
    merchant: Merchant,
) -> None:
    wrong = Merchant(merchant.client, merchant.customer_id, {"USD": merchant.account_ids["EUR"]})
    response = wrong.pay(100, currency="USD")
    assert response.status_code == 422
    assert response.json()["code"] == "currency_mismatch"


def test_unknown_currency_is_named_and_nothing_is_written_when_paying_or_paying_out(
    merchant: Merchant, simulator: Simulator
) -> None:
    provider_calls_before = simulator.stats()
    balance_before = merchant.balance()["posted"]
    # XXX is ISO 4217's "no currency" code: never money.
    unknown = Merchant(merchant.client, merchant.customer_id, {"XXX": merchant.account_ids["USD"]})
    paid = unknown.pay(100, currency="XXX")
    payout = merchant.client.post(
        "/v1/payouts",
        json={
            "account_id": merchant.account_ids["USD"],
            "amount_minor": 100,
            "currency": "XXX",
            "destination": {"provider": "acme", "bank_token": "btok_merchant"},
        },
        idempotency_key=key(),
    )
    for refused in (paid, payout):
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "unknown_currency"
    assert simulator.stats() == provider_calls_before
    assert merchant.balance()["posted"] == balance_before


def test_ledger_chain_verifies_and_every_payment_transaction_balances_when_all_ran(
    merchant: Merchant,
) -> None:
    payment = merchant.pay(900, capture="manual").json()
    merchant.client.post(
        f"/v1/payments/{payment['id']}/capture", json={"amount_minor": 900}, idempotency_key=key()
    )
    merchant.client.post(
        f"/v1/payments/{payment['id']}/refunds", json={"amount_minor": 100}, idempotency_key=key()
    )
    final = merchant.payment(payment["id"])
    assert len(final["ledger_transaction_ids"]) == 2
    assert all(_balanced(merchant, txn) for txn in final["ledger_transaction_ids"])
    verify = merchant.client.get("/v1/ledger/verify").json()
    assert verify["ok"] is True


def test_another_clients_customer_is_unknown_when_paying(
    merchant: Merchant, client_factory: ClientFactory, payments_http: httpx.Client
) -> None:
    stranger = new_merchant(client_factory, payments_http, ("USD",))
    borrowed = Merchant(stranger.client, merchant.customer_id, stranger.account_ids)
    response = borrowed.pay(100)
    assert response.status_code == 422
    assert response.json()["code"] == "unknown_customer"


def test_other_clients_get_not_found_for_payments_and_payouts_when_not_the_creator(
    merchant: Merchant, client_factory: ClientFactory, payments_http: httpx.Client
) -> None:
    merchant.pay(700)  # funds for the payout below
    payment = merchant.pay(600, capture="manual").json()
    payout = merchant.client.post(
        "/v1/payouts",
        json={
            "account_id": merchant.account_ids["USD"],
            "amount_minor": 1,
            "currency": "USD",
            "destination": {"provider": "acme", "bank_token": "btok_x"},
        },
        idempotency_key=key(),
    ).json()
    other = new_merchant(client_factory, payments_http, ("USD",)).client
    answers = [
        other.get(f"/v1/payments/{payment['id']}"),
        other.post(f"/v1/payments/{payment['id']}/capture", json={}, idempotency_key=key()),
        other.post(f"/v1/payments/{payment['id']}/void", idempotency_key=key()),
        other.post(
            f"/v1/payments/{payment['id']}/refunds", json={"amount_minor": 1}, idempotency_key=key()
        ),
        other.get(f"/v1/payouts/{payout['id']}"),
    ]
    assert [answer.status_code for answer in answers] == [404] * 5
    assert {answer.json()["code"] for answer in answers} == {"not_found"}
    assert merchant.payment(payment["id"])["status"] == "authorized"
