"""What the payment drills share: the simulator's control API, a merchant with verified
customers, and the checks that every payment was charged once and booked once."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx

from app.entrypoints.devstack import Stack
from app.entrypoints.drills.harness import CURRENCY, REQUEST_TIMEOUT, open_account
from app.entrypoints.drills.report import DrillReport
from app.platform.signed_client import SignedClient

MERCHANT_SCOPES = (
    "payments:write",
    "payments:read",
    "kyc:write",
    "ledger:write",
    "ledger:read",
)
# Payment states that mean the provider holds a charge for it.
CHARGED = frozenset({"authorized", "captured", "partially_refunded", "refunded", "voided"})
UNSETTLED = frozenset({"pending", "pending_review"})
APPROVE_TOKEN = "tok_visa"  # noqa: S105 - the simulator's always-approved test card


class Simulator:
    """The provider simulator's control API (`/_sim/...`): faults, webhooks and counts."""

    def __init__(self, stack: Stack) -> None:
        self.http = httpx.Client(base_url=stack.sim_url, timeout=REQUEST_TIMEOUT)

    def fault(self, provider: str, operation: str, **fault: Any) -> None:
        self.http.put(f"/_sim/faults/{provider}/{operation}", json=fault).raise_for_status()

    def clear(self) -> None:
        self.http.delete("/_sim/faults").raise_for_status()

    def webhooks(self, *, paused: bool) -> None:
        self.http.put("/_sim/webhooks", json={"paused": paused}).raise_for_status()

    def stats(self) -> dict[str, Any]:
        response = self.http.get("/_sim/stats")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def charges(self) -> dict[str, int]:
        return {name: int(counts["charges"]) for name, counts in self.stats().items()}

    def requests(self, provider: str, operation: str) -> int:
        return int(self.stats()[provider]["requests"].get(operation, 0))

    def close(self) -> None:
        self.http.close()


# A new customer may make three payments an hour before the risk policy holds the next one
# for review (`policies/risk.rego`, `new_customer.count`). Drill traffic is many shoppers,
# not one customer's burst, so each customer pays at most this many times.
PAYMENTS_PER_CUSTOMER = 3


@dataclass
class Shop:
    """A merchant account and the verified customers paying into it.

    A payment retried with the same idempotency key is made by the same customer, so the
    retry is the same request; a new key goes to the current customer until that customer
    has made `PAYMENTS_PER_CUSTOMER` payments, then to a newly verified one."""

    client: SignedClient
    account_id: str
    _customer_by_key: dict[str, str] = field(default_factory=dict)
    _current: str | None = None
    _current_uses: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def customer_for(self, key: str) -> str:
        with self._lock:
            known = self._customer_by_key.get(key)
            if known is not None:
                return known
            if self._current is None or self._current_uses >= PAYMENTS_PER_CUSTOMER:
                self._current, self._current_uses = verified_customer(self.client), 0
            self._current_uses += 1
            self._customer_by_key[key] = self._current
            return self._current

    def pay(
        self, amount_minor: int, *, key: str, provider: str = "auto", token: str = APPROVE_TOKEN
    ) -> httpx.Response:
        body = {
            "amount_minor": amount_minor,
            "currency": CURRENCY,
            "customer_id": self.customer_for(key),
            "payment_method": {"provider": provider, "token": token},
            "merchant_account_id": self.account_id,
            "capture": "automatic",
        }
        return self.client.post("/v1/payments", json=body, idempotency_key=key)

    def payment(self, payment_id: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/payments/{payment_id}")
        if response.status_code != 200:
            raise RuntimeError(f"payment {payment_id}: {response.status_code} {response.text}")
        body: dict[str, Any] = response.json()
        return body


def new_key() -> str:
    return f"drill-{secrets.token_hex(8)}"


def verified_customer(client: SignedClient) -> str:
    customer = client.post(
        "/v1/customers",
        json={"name": "Drill Buyer", "email": "drill@example.com", "country": "DE"},
        idempotency_key=new_key(),
    )
    if customer.status_code != 201:
        raise RuntimeError(f"could not create a customer: {customer.status_code} {customer.text}")
    customer_id = str(customer.json()["id"])
    verified = client.post(
        f"/v1/customers/{customer_id}/kyc", json={"status": "verified"}, idempotency_key=new_key()
    )
    if verified.status_code != 200:
        raise RuntimeError(f"could not verify the customer: {verified.text}")
    return customer_id


def open_shop(client: SignedClient) -> Shop:
    return Shop(client, open_account(client, "credit"))


def unsettled(shop: Shop, payment_ids: set[str]) -> list[str]:
    return [p for p in sorted(payment_ids) if shop.payment(p)["status"] in UNSETTLED]


def check_payments(
    report: DrillReport,
    shop: Shop,
    payment_ids: set[str],
    charges_before: dict[str, int],
    charges_after: dict[str, int],
) -> dict[str, dict[str, Any]]:
    """One provider per payment, one provider charge per charged payment (the simulator's
    counts), one ledger transaction per captured payment, the merchant credited exactly the
    captured amounts, and `verify` ok. Returns the payments as last read."""
    payments = {payment_id: shop.payment(payment_id) for payment_id in sorted(payment_ids)}
    providers_per_payment = {
        payment_id: {step["provider"] for step in p["steps"] if step.get("provider")}
        for payment_id, p in payments.items()
    }
    report.check(
        "one_provider_per_payment",
        all(len(found) <= 1 for found in providers_per_payment.values()),
        f"{sum(1 for f in providers_per_payment.values() if len(f) > 1)} at two providers",
    )
    expected: dict[str, int] = {name: 0 for name in charges_after}
    for p in payments.values():
        if p["status"] in CHARGED and p.get("provider"):
            expected[str(p["provider"])] += 1
    made = {name: charges_after[name] - charges_before.get(name, 0) for name in charges_after}
    references = [p["provider_reference"] for p in payments.values() if p["status"] in CHARGED]
    report.check(
        "one_provider_charge_per_payment",
        made == expected and len(references) == len(set(references)),
        f"simulator made {made}, payments charged {expected}",
    )
    captured = [p for p in payments.values() if p["status"] == "captured"]
    report.check(
        "one_ledger_posting_per_payment",
        all(len(p["ledger_transaction_ids"]) == 1 for p in captured)
        and all(
            not p["ledger_transaction_ids"] for p in payments.values() if p["status"] not in CHARGED
        ),
        f"{len(captured)} captured payments",
    )
    balances = shop.client.get(f"/v1/ledger/accounts/{shop.account_id}").json()["balances"]
    captured_minor = sum(int(p["amount_minor"]) for p in captured)
    report.check(
        "money_conserved",
        int(balances["posted"]) == captured_minor,
        f"merchant credited {balances['posted']}, captured {captured_minor}",
    )
    verify = shop.client.get("/v1/ledger/verify").json()
    report.check(
        "ledger_verify_ok", verify.get("ok") is True, f"{verify.get('entries_checked')} entries"
    )
    for p in payments.values():
        name = f"payments_{p['status']}"
        report.figures[name] = report.figures.get(name, 0) + 1
    report.figures["provider_charges"] = sum(made.values())
    return payments
