"""The payment status machine (one table) and the refund bound, tested without I/O."""

from __future__ import annotations

import pytest

from app.payments.config import Routing
from app.payments.domain import (
    TRANSITIONS,
    InvalidStateError,
    PaymentEvent,
    PaymentStatus,
    RefundExceedsCapturedError,
    check_capture,
    check_refund,
    is_stale,
    refund_event,
    refundable_minor,
    transition,
)
from app.payments.routing import NoProviderAvailableError, choose_route, split_bucket

S = PaymentStatus
E = PaymentEvent


@pytest.mark.parametrize(
    ("status", "event", "target"),
    [
        (S.PENDING, E.AUTHORIZED, S.AUTHORIZED),
        (S.PENDING, E.PROVIDER_DECLINED, S.DECLINED),
        (S.PENDING, E.REVIEW_REQUIRED, S.PENDING_REVIEW),
        (S.PENDING_REVIEW, E.REVIEW_APPROVED, S.PENDING),
        (S.PENDING_REVIEW, E.REVIEW_REJECTED, S.DECLINED),
        (S.AUTHORIZED, E.CAPTURED, S.CAPTURED),
        (S.AUTHORIZED, E.VOIDED, S.VOIDED),
        (S.CAPTURED, E.REFUNDED_IN_PART, S.PARTIALLY_REFUNDED),
        (S.PARTIALLY_REFUNDED, E.REFUNDED_IN_FULL, S.REFUNDED),
    ],
)
def test_transition_follows_the_table_when_the_pair_is_listed(
    status: PaymentStatus, event: PaymentEvent, target: PaymentStatus
) -> None:
    assert transition(status, event) is target


@pytest.mark.parametrize(
    ("status", "event"),
    [
        (S.VOIDED, E.CAPTURED),
        (S.CAPTURED, E.VOIDED),
        (S.CAPTURED, E.AUTHORIZED),
        (S.AUTHORIZED, E.REFUNDED_IN_PART),
        (S.REFUNDED, E.REFUNDED_IN_PART),
        (S.DECLINED, E.AUTHORIZED),
        (S.PENDING_REVIEW, E.CAPTURED),
    ],
)
def test_transition_refuses_with_invalid_state_when_the_pair_is_not_listed(
    status: PaymentStatus, event: PaymentEvent
) -> None:
    with pytest.raises(InvalidStateError) as raised:
        transition(status, event)
    assert raised.value.code == "invalid_state"
    assert raised.value.status == 409


def test_final_statuses_have_no_way_out_when_any_event_arrives() -> None:
    for status in (S.REFUNDED, S.VOIDED, S.DECLINED, S.FAILED):
        assert not any(source is status for source, _ in TRANSITIONS)


def test_late_authorized_is_stale_when_the_payment_is_captured() -> None:
    assert is_stale(S.CAPTURED, E.AUTHORIZED)
    assert is_stale(S.REFUNDED, E.CAPTURED)
    assert not is_stale(S.PENDING, E.AUTHORIZED)
    assert not is_stale(S.AUTHORIZED, E.CAPTURED)


def test_refund_bound_is_captured_minus_refunds_not_failed_when_several_exist() -> None:
    assert refundable_minor(1000, [300, 200]) == 500
    check_refund(1000, [300, 200], 500)
    with pytest.raises(RefundExceedsCapturedError) as raised:
        check_refund(1000, [300, 200], 501)
    assert raised.value.code == "refund_exceeds_captured"


def test_refund_event_is_full_when_the_total_reaches_the_captured_amount() -> None:
    assert refund_event(1000, 999) is E.REFUNDED_IN_PART
    assert refund_event(1000, 1000) is E.REFUNDED_IN_FULL


def test_capture_refuses_when_above_the_authorized_amount() -> None:
    check_capture(1000, 1000)
    check_capture(1000, 1)
    with pytest.raises(Exception, match="capture of 1001"):
        check_capture(1000, 1001)


def test_route_follows_currency_rule_when_the_currency_is_listed() -> None:
    routing = Routing(default_provider="acme", by_currency={"EUR": "globex"})
    choice = choose_route(routing, "EUR", "pay_1", lambda _: False)
    assert (choice.provider, choice.rule) == ("globex", "currency:EUR")
    assert choose_route(routing, "USD", "pay_1", lambda _: False).provider == "acme"


def test_split_sends_about_the_given_share_when_many_payments_are_routed() -> None:
    routing = Routing(default_provider="acme", split_provider="globex", split_percent=10)
    chosen = [
        choose_route(routing, "USD", f"pay_{i:04d}", lambda _: False).provider for i in range(2000)
    ]
    share = chosen.count("globex") / len(chosen)
    assert 0.08 < share < 0.12
    assert all(0 <= split_bucket(f"pay_{i}") < 100 for i in range(100))


def test_route_falls_back_when_the_first_choice_breaker_is_open_before_the_call() -> None:
    routing = Routing(default_provider="acme")
    choice = choose_route(routing, "USD", "pay_1", lambda provider: provider == "acme")
    assert choice.provider == "globex"
    assert choice.fallback_from == "acme"
    assert "fallback" in choice.rule


def test_route_refuses_with_provider_unavailable_when_every_breaker_is_open() -> None:
    with pytest.raises(NoProviderAvailableError) as raised:
        choose_route(Routing(), "USD", "pay_1", lambda _: True)
    assert raised.value.code == "provider_unavailable"
    assert raised.value.status == 503


def test_requested_provider_never_falls_back_when_its_breaker_is_open() -> None:
    with pytest.raises(NoProviderAvailableError):
        choose_route(Routing(), "USD", "pay_1", lambda p: p == "globex", requested="globex")
    assert choose_route(Routing(), "USD", "pay_1", lambda _: False, "globex").rule == "requested"
