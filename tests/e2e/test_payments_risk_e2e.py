"""The saga's risk check against the real policy, end to end over HTTP: a velocity burst
goes to review, a decline is declined with reason codes, a review decision resumes or
declines the held payment, and OPA stopped in the middle of a payment holds it for review
(never authorized, never charged). Every decision is audited with OPA's decision id."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import psycopg
import pytest

from app.entrypoints.devstack import Stack
from tests.support.api_client import ApiClient, ClientFactory
from tests.support.payments import (
    ApiProcess,
    Merchant,
    Simulator,
    key,
    run_worker_once,
    wait_for,
)

# risk.rego: a customer younger than 30 days may make 3 payments an hour; the 4th is
# reviewed. A basic-tier customer's single payment above 100000 is declined.
NEW_CUSTOMER_HOURLY_COUNT = 3
BASIC_TIER_LIMIT_MINOR = 100_000


@pytest.fixture(scope="module")
def db_url(stack: Stack) -> str:
    if stack.database_url is None:
        raise RuntimeError("the stack has no database")
    return stack.database_url


@pytest.fixture(scope="module")
def reviewer(client_factory: ClientFactory, payments_http: httpx.Client) -> ApiClient:
    return client_factory(scopes=("risk:read", "risk:write"), http=payments_http)


def _risk_step(payment: dict[str, Any]) -> dict[str, Any]:
    (step,) = [step for step in payment["steps"] if step["name"] == "risk_check"]
    return step


def _charges(simulator: Simulator) -> int:
    return int(simulator.stats()["acme"]["charges"])


def _open_review_of(reviewer: ApiClient, payment_id: str) -> dict[str, Any] | None:
    """The open review of `payment_id`, paging through `GET /v1/risk/reviews?status=open`."""
    cursor: str | None = None
    for _ in range(100):
        params = {"status": "open", "limit": "100", **({"cursor": cursor} if cursor else {})}
        response = reviewer.get("/v1/risk/reviews", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        for review in page["data"]:
            if review["payment_id"] == payment_id:
                found: dict[str, Any] = review
                return found
        cursor = page["next_cursor"]
        if cursor is None:
            return None
    raise AssertionError("more than 100 pages of open reviews")


def _assessment_audit(db_url: str, payment_id: str) -> list[tuple[str | None, Any]]:
    with psycopg.connect(db_url) as connection:
        rows = connection.execute(
            "SELECT decision_id, details FROM platform.audit_log"
            " WHERE event_type = 'risk.assessed' AND resource_id = %s",
            (payment_id,),
        ).fetchall()
    return [(row[0], row[1]) for row in rows]


def _burst(merchant: Merchant, customer_id: str) -> list[dict[str, Any]]:
    """One customer pays one more time than the policy's hourly count allows."""
    payments = []
    for n in range(NEW_CUSTOMER_HOURLY_COUNT + 1):
        response = merchant.pay(200 + n, customer_id=customer_id)
        assert response.status_code == 201, response.text
        payments.append(response.json())
    return payments


def test_payment_past_the_velocity_limit_goes_to_review_when_one_customer_bursts(
    merchant: Merchant, reviewer: ApiClient, simulator: Simulator, db_url: str
) -> None:
    customer_id = merchant.new_customer()
    before = _charges(simulator)
    *allowed, held = _burst(merchant, customer_id)
    assert [payment["status"] for payment in allowed] == ["captured"] * len(allowed)
    assert held["status"] == "pending_review"
    assert held["ledger_transaction_ids"] == []
    assert _charges(simulator) == before + len(allowed)  # the held one was never charged
    step = _risk_step(held)
    assert step["status"] == "failed"
    assert step["detail"]["decision"] == "review"
    assert "velocity_count_1h" in step["detail"]["reason_codes"]
    assert step["detail"]["decision_id"]  # OPA's decision id
    review = _open_review_of(reviewer, held["id"])
    assert review is not None
    assert review["id"] == step["detail"]["review_id"]
    assert review["customer_id"] == customer_id
    assert "velocity_count_1h" in review["reasons"]
    assert review["decision_id"] == step["detail"]["decision_id"]
    # Every decision of the burst is audited with the decision id OPA gave.
    for payment in [*allowed, held]:
        ((decision_id, details),) = _assessment_audit(db_url, payment["id"])
        assert decision_id == _risk_step(payment)["detail"]["decision_id"]
        assert details["risk_outcome"] == _risk_step(payment)["detail"]["decision"]


def test_payment_is_declined_with_reason_codes_when_the_policy_declines(
    merchant: Merchant, simulator: Simulator, db_url: str
) -> None:
    before = _charges(simulator)
    response = merchant.pay(BASIC_TIER_LIMIT_MINOR + 1)
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["status"] == "declined"
    assert payment["ledger_transaction_ids"] == []
    assert _charges(simulator) == before
    step = _risk_step(payment)
    assert step["detail"]["decision"] == "decline"
    assert "amount_over_tier_limit" in step["detail"]["reason_codes"]
    assert step["detail"]["review_id"] is None
    ((decision_id, _details),) = _assessment_audit(db_url, payment["id"])
    assert decision_id is not None
    assert decision_id == step["detail"]["decision_id"]


def test_review_decision_resumes_or_declines_the_held_payment_when_decided_over_the_api(
    stack: Stack, merchant: Merchant, reviewer: ApiClient
) -> None:
    held = [_burst(merchant, merchant.new_customer())[-1] for _ in range(2)]
    assert [payment["status"] for payment in held] == ["pending_review"] * 2
    for payment, verdict in zip(held, ("approve", "reject"), strict=True):
        review_id = _risk_step(payment)["detail"]["review_id"]
        decided = reviewer.post(
            f"/v1/risk/reviews/{review_id}/decision",
            json={"decision": verdict, "reason": "checked by a person"},
            idempotency_key=key(),
        )
        assert decided.status_code == 200, decided.text
    run_worker_once(stack, {})
    approved, rejected = (merchant.payment(payment["id"]) for payment in held)
    assert approved["status"] == "captured"
    assert len(approved["ledger_transaction_ids"]) == 1
    assert rejected["status"] == "declined"
    assert rejected["ledger_transaction_ids"] == []
    assert [step["name"] for step in approved["steps"]][:3] == [
        "risk_check",
        "route",
        "risk_review",
    ]


def _advisory_lock_waiters(db_url: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).fetchone()
    return int(row[0]) if row else 0


def test_payment_is_held_for_review_and_never_charged_when_opa_stops_during_it(
    stack: Stack,
    payments_api: ApiProcess,
    merchant: Merchant,
    simulator: Simulator,
    db_url: str,
) -> None:
    customer_id = merchant.new_customer()
    before = _charges(simulator)
    answers: list[httpx.Response] = []
    # Authorization of the request itself asks OPA too, so OPA must go away after that and
    # before the risk decision. The assessment takes a per-customer advisory lock just
    # before it asks OPA: holding that lock parks the payment exactly there.
    blocker = psycopg.connect(db_url)
    try:
        blocker.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('risk:' || %s, 0))", (customer_id,)
        )
        caller = threading.Thread(
            target=lambda: answers.append(merchant.pay(777, customer_id=customer_id))
        )
        caller.start()
        wait_for(lambda: _advisory_lock_waiters(db_url) > 0, timeout_s=30)
        stack.stop("opa")  # really stopped: the process is gone, its port closed
        blocker.commit()  # the payment goes on to ask the stopped OPA
        caller.join(timeout=60)
    finally:
        blocker.close()
        if "opa" not in stack.processes:
            stack.start_opa()
    wait_for(lambda: httpx.get(f"{payments_api.url}/readyz", timeout=2).status_code == 200)
    (answer,) = answers
    assert answer.status_code == 201, answer.text
    payment = answer.json()
    assert payment["status"] == "pending_review"
    assert payment["ledger_transaction_ids"] == []
    assert [step["name"] for step in payment["steps"]] == ["risk_check", "route"]
    step = _risk_step(payment)
    assert step["detail"]["reason_codes"] == ["risk_engine_unavailable"]
    assert step["detail"]["decision_id"] is None  # OPA gave no answer
    assert step["detail"]["review_id"]
    assert _charges(simulator) == before
    # Still held once OPA is back: nothing approves it but a person.
    time.sleep(0.5)
    assert merchant.payment(payment["id"])["status"] == "pending_review"
