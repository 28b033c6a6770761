"""The payment drills, injected through the provider simulator's fault API: one provider
failing under payment traffic, and a lost response met by a client retry storm."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from app.entrypoints.devstack import Stack
from app.entrypoints.drills.harness import create_client, metric_value, poll, signed
from app.entrypoints.drills.report import DrillReport
from app.entrypoints.drills.shop import (
    MERCHANT_SCOPES,
    Shop,
    Simulator,
    check_payments,
    new_key,
    open_shop,
    unsettled,
)
from app.platform.client_credentials import ClientCredentials

# The simulator's card token whose charge is made but whose answer never arrives.
LOST_RESPONSE_TOKEN = "tok_lost_response"  # noqa: S105 - a simulator test token
OUTAGE_PROVIDER = "acme"  # the routing default, so "auto" payments show the fallback
# The rest of the failing provider's requests time out: nothing succeeds during the outage.
OUTAGE_ERROR_RATE = 0.7
DETECTION_DEADLINE_S = 30.0
# Long enough for the breaker's reset (PROVIDER_BREAKER_RESET_MS, 30 s by default).
RECOVERY_DEADLINE_S = 90.0
# The recovery worker waits PAYMENTS_RECOVERY_AFTER_S (30 s by default) plus its interval.
SETTLE_DEADLINE_S = 120.0
# A refusal without a provider call: well under one provider timeout.
FAIL_FAST_S = 1.0
TRIAL_INTERVAL_S = 1.0
STORM_CLIENTS = 4
STORM_MIN_REQUESTS = 5
STORM_GAP_S = 0.3
STORM_DEADLINE_S = 90.0
NEW_KEY_RETRIES = 2
# How long a client keeps re-sending one request (same key) for a definitive answer; the
# API's own provider retries take up to PROVIDER_RETRY_TOTAL_MS (20 s by default).
SEND_DEADLINE_S = 60.0
RESEND_GAP_S = 0.3


@dataclass
class Sent:
    provider: str
    status: int
    code: str | None
    elapsed_s: float
    payment: dict[str, Any] | None
    at_s: float


@dataclass
class PaymentTraffic:
    """Writers paying one by one, half pinned to the failing provider and half routed."""

    shop: Shop
    started: float
    writers: int = 2
    sent: list[Sent] = field(default_factory=list)
    unanswered: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _pay(self, provider: str) -> None:
        key, first = new_key(), time.monotonic()
        # An unknown outcome (client timeout, key still claimed by the first try) is
        # retried with the same key until the API answers definitively: only then does
        # the drill know whether the payment exists.
        while time.monotonic() - first < SEND_DEADLINE_S:
            began = time.monotonic()
            try:
                response = self.shop.pay(137, key=key, provider=provider)
            except httpx.HTTPError:
                time.sleep(RESEND_GAP_S)
                continue
            if response.status_code == 409:
                time.sleep(RESEND_GAP_S)
                continue
            problem = response.headers.get("content-type", "").startswith("application/problem")
            sent = Sent(
                provider=provider,
                status=response.status_code,
                code=str(response.json().get("code")) if problem else None,
                elapsed_s=time.monotonic() - began,
                payment=response.json() if response.status_code == 201 else None,
                at_s=began - self.started,
            )
            with self._lock:
                self.sent.append(sent)
            return
        with self._lock:
            self.unanswered += 1

    def _write(self, index: int) -> None:
        provider = OUTAGE_PROVIDER if index % 2 == 0 else "auto"
        while not self._stop.is_set():
            self._pay(provider)
            time.sleep(0.1)

    def start(self) -> None:
        for index in range(self.writers):
            thread = threading.Thread(target=self._write, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=SEND_DEADLINE_S + 10)

    def acknowledged(self) -> set[str]:
        with self._lock:
            return {str(s.payment["id"]) for s in self.sent if s.payment is not None}


def _breaker(stack: Stack, state: str) -> float:
    return metric_value(
        stack, "moneypath_provider_breaker_state", {"provider": OUTAGE_PROVIDER, "state": state}
    )


def provider_outage(stack: Stack, report: DrillReport, _: ClientCredentials) -> None:
    """Every authorize at one provider answers 503 under two payment writers: the breaker
    opens, pinned payments are refused at once, routed ones fall back; after the fault is
    cleared one trial call closes the breaker and the recovery worker settles the rest."""
    sim = Simulator(stack)
    shop = open_shop(signed(stack, create_client(stack, "drill-merchant", MERCHANT_SCOPES)))
    charges_before = sim.charges()
    traffic = PaymentTraffic(shop, time.monotonic())
    report.note("traffic: 2 writers paying (one pinned to acme, one routed automatically)")
    traffic.start()
    time.sleep(1.0)
    report.note(
        f"injecting fault: {OUTAGE_PROVIDER} authorize answers 503 to {OUTAGE_ERROR_RATE:.0%} "
        "of requests and holds the rest open past the adapter's timeout"
    )
    sim.fault(OUTAGE_PROVIDER, "authorize", error_rate=OUTAGE_ERROR_RATE, timeout_rate=1.0)
    injected = time.monotonic() - traffic.started
    report.detected_after_s = poll(lambda: _breaker(stack, "open") == 1, DETECTION_DEADLINE_S)
    report.note(f"breaker state open after {report.detected_after_s} s")
    time.sleep(1.5)  # both writers meet the open breaker (well inside its reset window)
    traffic.stop()
    opened = injected + (report.detected_after_s or 0.0)
    after_open = [s for s in traffic.sent if s.at_s >= opened]
    refused = [s for s in after_open if s.provider == OUTAGE_PROVIDER]
    fell_back = [s for s in after_open if s.provider == "auto" and s.payment is not None]
    report.note(
        f"after the breaker opened: {len(refused)} pinned payments, {len(fell_back)} routed"
    )
    report.check("detected_by_breaker_metric", report.detected_after_s is not None)
    report.check(
        "pinned_payments_failed_fast_503",
        bool(refused)
        and all(
            s.status == 503 and s.code == "provider_unavailable" and s.elapsed_s < FAIL_FAST_S
            for s in refused
        ),
        f"answers {sorted({(s.status, s.code) for s in refused}, key=str)}",
    )
    fallback_providers = {str((s.payment or {}).get("provider")) for s in fell_back}
    report.check(
        "routed_payments_fell_back",
        bool(fell_back)
        and all(
            s.payment is not None
            and s.payment["provider"] != OUTAGE_PROVIDER
            and "fallback" in str(s.payment["route_rule"])
            for s in fell_back
        ),
        f"{len(fell_back)} routed to {sorted(fallback_providers)}",
    )

    report.note("recovering: fault cleared; waiting for one trial call to close the breaker")
    sim.clear()
    cleared = time.monotonic()
    trials: list[int] = []
    trial_ids: set[str] = set()
    while time.monotonic() - cleared < RECOVERY_DEADLINE_S:
        response = shop.pay(151, key=new_key(), provider=OUTAGE_PROVIDER)
        trials.append(response.status_code)
        if response.status_code == 201:
            trial_ids.add(str(response.json()["id"]))
            if response.json()["status"] == "captured":
                report.recovered_after_s = time.monotonic() - cleared
                break
        time.sleep(TRIAL_INTERVAL_S)
    report.note(
        f"trial payment captured after {report.recovered_after_s} s "
        f"({trials.count(503)} refused while the breaker was open, answers {sorted(set(trials))})"
    )
    report.check("recovered_through_trial_call", report.recovered_after_s is not None)
    report.check("breaker_closed", _breaker(stack, "closed") == 1)

    acknowledged = traffic.acknowledged() | trial_ids
    report.note(f"waiting for the recovery worker to settle {len(acknowledged)} payments")
    settled_after_s = poll(lambda: not unsettled(shop, acknowledged), SETTLE_DEADLINE_S)
    left = unsettled(shop, acknowledged)
    report.note(f"settled after {settled_after_s} s; {len(left)} still pending")
    report.check("every_payment_settled", not left, f"pending: {left[:5]}")
    report.check(
        "every_request_answered", traffic.unanswered == 0, f"{traffic.unanswered} unanswered"
    )
    report.figures["payments_acknowledged"] = len(acknowledged)
    report.figures["refused_fast_503"] = len(refused)
    report.figures["fell_back"] = len(fell_back)
    check_payments(report, shop, acknowledged, charges_before, sim.charges())
    shop.client.close()
    sim.close()


@dataclass
class Storm:
    """Clients re-sending one payment: most with its key, some (wrongly) with a new one."""

    shop: Shop
    key: str
    answers: dict[int, int] = field(default_factory=dict)
    replays: int = 0
    payment_ids: set[str] = field(default_factory=set)
    new_key_ids: set[str] = field(default_factory=set)
    conflict_codes: set[str] = field(default_factory=set)
    unanswered: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _send(self, key: str) -> str | None:
        try:
            response = self.shop.pay(990, key=key, provider="acme", token=LOST_RESPONSE_TOKEN)
        except httpx.HTTPError:
            status, payment_id, replayed = 0, None, False
        else:
            status = response.status_code
            payment_id = str(response.json()["id"]) if status == 201 else None
            replayed = response.headers.get("idempotent-replayed") == "true"
            if status == 409:
                with self._lock:
                    self.conflict_codes.add(str(response.json().get("code")))
        with self._lock:
            self.answers[status] = self.answers.get(status, 0) + 1
            self.replays += int(replayed)
        return payment_id

    def same_key_client(self) -> None:
        sent, answered, started = 0, False, time.monotonic()
        while time.monotonic() - started < STORM_DEADLINE_S:
            payment_id = self._send(self.key)
            sent += 1
            if payment_id is not None:
                answered = True
                with self._lock:
                    self.payment_ids.add(payment_id)
                if sent >= STORM_MIN_REQUESTS:
                    return
            time.sleep(STORM_GAP_S)
        if not answered:
            with self._lock:
                self.unanswered += 1

    def new_key_client(self) -> None:
        key, first = new_key(), time.monotonic()
        while time.monotonic() - first < SEND_DEADLINE_S:
            payment_id = self._send(key)
            if payment_id is not None:
                with self._lock:
                    self.new_key_ids.add(payment_id)
                return
            time.sleep(STORM_GAP_S)
        with self._lock:
            self.unanswered += 1

    def run(self) -> None:
        threads = [threading.Thread(target=self.same_key_client) for _ in range(STORM_CLIENTS)]
        threads += [threading.Thread(target=self.new_key_client) for _ in range(NEW_KEY_RETRIES)]
        for thread in threads:
            thread.start()
            time.sleep(0.05)
        for thread in threads:
            thread.join(timeout=STORM_DEADLINE_S + 30)


def double_charge(stack: Stack, report: DrillReport, _: ClientCredentials) -> None:
    """A payment whose provider response is lost, re-sent by a storm of clients with the
    same Idempotency-Key (and two with new keys). Webhooks are paused so the recovery
    worker's lookup must settle it; afterwards each payment has one charge, one posting."""
    sim = Simulator(stack)
    shop = open_shop(signed(stack, create_client(stack, "drill-merchant", MERCHANT_SCOPES)))
    charges_before = sim.charges()
    lookups_before = sim.requests("acme", "lookup")
    replays_before = metric_value(stack, "moneypath_idempotent_replays_total")
    sim.webhooks(paused=True)
    storm = Storm(shop, new_key())
    report.note(
        f"injecting fault: tok_lost_response at acme; {STORM_CLIENTS} clients retry with one "
        f"key, {NEW_KEY_RETRIES} with new keys"
    )
    try:
        storm.run()
        report.note(f"storm over: answers {storm.answers}, {storm.replays} replays seen")
        report.detected_after_s = poll(
            lambda: (
                metric_value(stack, "moneypath_idempotent_replays_total") - replays_before
                >= max(storm.replays, 1)
            ),
            DETECTION_DEADLINE_S,
        )
        report.note(f"replay metric rose after {report.detected_after_s} s")
        report.check("detected_by_replay_metric", report.detected_after_s is not None)
        report.check(
            "storm_answered_409_or_replayed",
            storm.answers.get(409, 0) > 0
            and storm.conflict_codes == {"idempotency_key_in_use"}
            and storm.replays > 0
            and set(storm.answers) <= {0, 201, 409},
            f"answers {storm.answers}, 409 codes {sorted(storm.conflict_codes)}",
        )
        report.check(
            "every_client_answered", storm.unanswered == 0, f"{storm.unanswered} unanswered"
        )
        report.check(
            "same_key_one_payment",
            len(storm.payment_ids) == 1,
            f"payments {sorted(storm.payment_ids)}",
        )
        payment_ids = storm.payment_ids | storm.new_key_ids
        started = time.monotonic()
        report.recovered_after_s = poll(lambda: not unsettled(shop, payment_ids), SETTLE_DEADLINE_S)
        lookups = sim.requests("acme", "lookup") - lookups_before
        report.note(
            f"recovery worker settled {len(payment_ids)} payments after "
            f"{report.recovered_after_s} s with {lookups} provider lookups"
        )
        report.check(
            "settled_by_recovery_lookup",
            report.recovered_after_s is not None and lookups >= len(payment_ids),
            f"{lookups} lookups",
        )
        before_webhooks = {p: shop.payment(p)["ledger_transaction_ids"] for p in payment_ids}
    finally:
        sim.webhooks(paused=False)
    report.note("webhooks resumed: the provider's late events arrive now")
    time.sleep(3.0)
    after_webhooks = {p: shop.payment(p)["ledger_transaction_ids"] for p in payment_ids}
    report.check("late_webhooks_changed_nothing", after_webhooks == before_webhooks)
    report.figures["storm_409"] = storm.answers.get(409, 0)
    report.figures["storm_replays"] = storm.replays
    report.figures["payments_from_new_keys"] = len(storm.new_key_ids)
    report.figures["settle_s"] = int(time.monotonic() - started)
    check_payments(report, shop, payment_ids, charges_before, sim.charges())
    shop.client.close()
    sim.close()
