"""Provider faults end to end: lost responses, 5xx and the breaker, duplicate and late
provider webhooks, forged webhooks, and a kill -9 of the API between the provider's
success and the ledger posting. The simulator's counts prove "exactly one charge"."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from app.entrypoints.devstack import Stack
from tests.support.api_client import ClientFactory
from tests.support.payments import (
    Merchant,
    Simulator,
    api_process,
    key,
    new_merchant,
    run_worker_once,
    wait_for,
)

BREAKER_RESET_S = 1.6  # FAST_ENV's PROVIDER_BREAKER_RESET_MS plus a margin


@pytest.fixture(autouse=True)
def _clean_faults(simulator: Simulator) -> Iterator[None]:
    simulator.clear()
    simulator.webhooks(paused=False)
    yield
    simulator.clear()
    simulator.webhooks(paused=False)
    time.sleep(BREAKER_RESET_S)  # let a breaker a test opened go half-open again


@pytest.fixture(scope="module")
def db_url(stack: Stack) -> str:
    if stack.database_url is None:
        raise RuntimeError("the stack has no database")
    return stack.database_url


def _charges(simulator: Simulator, provider: str) -> int:
    return int(simulator.stats()[provider]["charges"])


def _step(payment: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [step for step in payment["steps"] if step["name"] == name]
    return found


def test_lost_response_leaves_the_payment_pending_then_recovery_charges_once_when_looked_up(
    stack: Stack, merchant: Merchant, simulator: Simulator
) -> None:
    simulator.webhooks(paused=True)  # only the recovery worker may settle it here
    before = _charges(simulator, "acme")
    response = merchant.pay(800, token="tok_lost_response", provider="acme")
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["status"] == "pending"
    assert payment["ledger_transaction_ids"] == []
    assert _step(payment, "authorize")["status"] == "started"
    time.sleep(1.2)  # older than PAYMENTS_RECOVERY_AFTER_S
    run_worker_once(stack, {})
    settled = merchant.payment(payment["id"])
    assert settled["status"] == "captured"
    assert len(settled["ledger_transaction_ids"]) == 1
    assert _step(settled, "authorize")["status"] == "succeeded"
    run_worker_once(stack, {})
    simulator.webhooks(paused=False)
    time.sleep(1.0)  # the provider's own (late) webhooks change nothing either
    assert (
        merchant.payment(payment["id"])["ledger_transaction_ids"]
        == settled["ledger_transaction_ids"]
    )
    assert _charges(simulator, "acme") == before + 1


def test_duplicate_authorized_webhooks_apply_once_when_the_response_was_lost(
    merchant: Merchant, simulator: Simulator, db_url: str
) -> None:
    simulator.fault("globex", "authorize", webhook_duplicates=2)
    before = _charges(simulator, "globex")
    response = merchant.pay(650, token="tok_lost_response", provider="globex")
    assert response.status_code == 201, response.text
    payment_id = response.json()["id"]
    done = wait_for(lambda: merchant.payment(payment_id)["status"] == "captured", timeout_s=30)
    assert done
    final = merchant.payment(payment_id)
    assert len(final["ledger_transaction_ids"]) == 1
    assert _charges(simulator, "globex") == before + 1
    with psycopg.connect(db_url) as connection:
        rows = connection.execute(
            "SELECT webhook_id, outcome FROM payments.inbound_webhooks WHERE payment_id = %s",
            (payment_id,),
        ).fetchall()
    assert len(rows) == len({webhook_id for webhook_id, _ in rows})  # one row per webhook-id
    sent = simulator.webhooks()["deliveries"]
    ids = {webhook_id for webhook_id, _ in rows}
    assert sum(1 for item in sent if item.get("webhook_id") in ids) >= 3  # duplicates did arrive


def test_late_authorized_webhook_never_moves_a_captured_payment_back_when_out_of_order(
    merchant: Merchant, simulator: Simulator, db_url: str
) -> None:
    # The authorization's webhook is held back, so the capture's overtakes it; both twice.
    simulator.fault("acme", "authorize", webhook_delay_ms=1500, webhook_duplicates=1)
    simulator.fault("acme", "capture", webhook_duplicates=1)
    response = merchant.pay(720, provider="acme")
    assert response.json()["status"] == "captured"
    payment_id = response.json()["id"]

    def outcomes() -> list[tuple[str, str]]:
        with psycopg.connect(db_url) as connection:
            return connection.execute(
                "SELECT event_type, outcome FROM payments.inbound_webhooks"
                " WHERE payment_id = %s ORDER BY seen_at",
                (payment_id,),
            ).fetchall()

    seen = wait_for(lambda: len(outcomes()) >= 2 and outcomes(), timeout_s=20)
    # The capture's webhook races the saga's own commit of the capture: whichever records
    # it first settles the capture step, and the other finds it done (so the webhook is
    # "applied" or "ignored"; a loaded machine saw both). The late authorization is always
    # stale, and below the payment stays captured with one ledger transaction.
    assert dict(seen).keys() == {"captured", "authorized"}
    assert dict(seen)["authorized"] == "stale"
    assert dict(seen)["captured"] in {"ignored", "applied"}
    final = merchant.payment(payment_id)
    assert final["status"] == "captured"
    assert len(final["ledger_transaction_ids"]) == 1


def test_forged_webhook_is_not_trusted_and_the_provider_is_asked_instead_when_unverifiable(
    stack: Stack, merchant: Merchant, simulator: Simulator, payments_http: httpx.Client
) -> None:
    authorized = merchant.pay(300, provider="acme", capture="manual").json()
    forged = {"type": "charge.settled", "data": {"id": authorized["provider_reference"]}}
    refused = payments_http.post(
        "/v1/webhooks/providers/acme",
        json=forged,
        headers={"webhook-id": "msg_forged", "webhook-timestamp": str(int(time.time())),
                 "webhook-signature": "v1,AAAA"},
    )  # fmt: skip
    assert refused.status_code == 401
    assert refused.json()["code"] == "invalid_signature"
    assert merchant.payment(authorized["id"])["status"] == "authorized"  # body not trusted
    # A payment stuck in authorize is settled from the provider's own status instead.
    simulator.webhooks(paused=True)
    pending = merchant.pay(310, token="tok_lost_response", provider="acme").json()
    assert pending["status"] == "pending"
    hint = payments_http.post(
        "/v1/webhooks/providers/acme",
        json={"type": "charge.authorized", "data": {"reference": pending["id"]}},
        headers={"webhook-id": "msg_forged_2", "webhook-timestamp": "1", "webhook-signature": "x"},
    )
    assert hint.status_code == 401
    assert merchant.payment(pending["id"])["status"] in {"authorized", "captured"}


def test_breaker_opens_then_fails_fast_falls_back_and_recovers_when_the_provider_errs(
    stack: Stack, merchant: Merchant, simulator: Simulator, payments_http: httpx.Client
) -> None:
    simulator.fault("acme", "authorize", error_rate=1.0)
    failing = [merchant.pay(210 + n, provider="acme") for n in range(2)]
    for response in failing:
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "pending"  # outcome unknown: recovery settles it
        assert _step(response.json(), "authorize")["attempts"] >= 1
    started = time.monotonic()
    fast = merchant.pay(230, provider="acme")
    assert fast.status_code == 503
    assert fast.json()["code"] == "provider_unavailable"
    assert time.monotonic() - started < 1.0  # no provider call was made
    fallback = merchant.pay(240, provider="auto")
    assert fallback.status_code == 201, fallback.text
    routed = fallback.json()
    assert routed["provider"] == "globex"
    assert _step(routed, "route")["detail"]["fallback_from"] == "acme"
    assert routed["status"] == "captured"
    simulator.clear()
    time.sleep(BREAKER_RESET_S)
    trial = merchant.pay(250, provider="acme")
    assert trial.json()["status"] == "captured"  # the half-open trial call went through
    metrics = payments_http.get("/metrics").text
    assert 'moneypath_provider_breaker_state{provider="acme",state="closed"} 1.0' in metrics
    time.sleep(1.2)
    run_worker_once(stack, {})
    for response in failing:
        settled = merchant.payment(response.json()["id"])
        assert settled["status"] == "captured"
        assert {step["provider"] for step in settled["steps"] if step["provider"]} == {"acme"}


def test_kill_9_between_provider_success_and_ledger_post_completes_exactly_once_on_restart(
    stack: Stack, client_factory: ClientFactory, simulator: Simulator
) -> None:
    simulator.webhooks(paused=True)  # the saga must be finished by recovery, not a webhook
    env = {"PAYMENTS_TEST_PAUSE_AFTER_PROVIDER": "authorize", "IDEMPOTENCY_STALE_CLAIM_S": "1"}
    with api_process(stack, "payments-api-kill9", env) as api:
        http = httpx.Client(base_url=api.url, timeout=60)
        owner = new_merchant(client_factory, http, ("USD",))
        customer = owner.customer_id  # the retry repeats the same body
        before = _charges(simulator, "acme")
        request_key = key()
        answers: list[httpx.Response | Exception] = []

        def pay() -> None:
            try:
                answers.append(
                    owner.pay(
                        990, provider="acme", idempotency_key=request_key, customer_id=customer
                    )
                )
            except httpx.HTTPError as error:
                answers.append(error)

        caller = threading.Thread(target=pay)
        caller.start()
        wait_for(lambda: b"test_pause_after_provider" in api.log_path.read_bytes(), 30)
        assert _charges(simulator, "acme") == before + 1  # the provider has charged
        api.kill9()  # SIGKILL: no shutdown, the ledger posting never ran
        caller.join(timeout=30)
        assert isinstance(answers[0], httpx.HTTPError)
        api.env.pop("PAYMENTS_TEST_PAUSE_AFTER_PROVIDER")
        api.start()
        time.sleep(1.2)
        run_worker_once(stack, {})
        # The client retries its request with the same key and gets the one payment.
        retried = owner.pay(990, provider="acme", idempotency_key=request_key, customer_id=customer)
        assert retried.status_code == 201, retried.text
        payment = retried.json()
        assert payment["status"] == "captured"
        assert len(payment["ledger_transaction_ids"]) == 1
        assert _step(payment, "authorize")["status"] == "succeeded"
        assert _charges(simulator, "acme") == before + 1
        assert owner.balance()["posted"] == 990
        http.close()


def test_no_payment_ever_has_attempts_at_two_providers_when_all_tests_ran(db_url: str) -> None:
    with psycopg.connect(db_url) as connection:
        mixed = connection.execute(
            "SELECT saga_id FROM payments.steps WHERE provider IS NOT NULL"
            " GROUP BY saga_id HAVING count(DISTINCT provider) > 1"
        ).fetchall()
        total = connection.execute("SELECT count(*) FROM payments.payments").fetchone()
    assert mixed == []
    assert total is not None
    assert total[0] > 0
