"""Each provider's words map onto ours; amounts never pass through a float."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.providers.adapters import AcmeAdapter, GlobexAdapter, UnreadableResponseError
from app.providers.api import ProviderEventType, ProviderOperation, ProviderOutcome
from app.providers.domain import (
    UnknownProviderError,
    decimal_to_minor,
    event_type_of,
    minor_to_decimal,
    outcome_of,
    provider_name,
)


@pytest.mark.parametrize(
    ("provider", "raw", "ours"),
    [
        ("acme", "SETTLED", ProviderOutcome.APPROVED),
        ("acme", "AUTHORIZED", ProviderOutcome.APPROVED),
        ("acme", "DECLINED", ProviderOutcome.DECLINED),
        ("acme", "PROCESSING", ProviderOutcome.PENDING),
        ("globex", "COMPLETE", ProviderOutcome.APPROVED),
        ("globex", "REJECTED", ProviderOutcome.DECLINED),
        ("globex", "IN_FLIGHT", ProviderOutcome.PENDING),
    ],
)
def test_status_maps_to_our_outcome_when_provider_uses_its_own_word(
    provider: str, raw: str, ours: ProviderOutcome
) -> None:
    assert outcome_of(provider_name(provider), raw) is ours


def test_unknown_status_is_failed_never_approved_when_provider_invents_a_word() -> None:
    assert outcome_of("acme", "COMPLETE") is ProviderOutcome.FAILED
    assert outcome_of("globex", "SETTLED") is ProviderOutcome.FAILED


def test_event_types_map_when_each_provider_names_them_differently() -> None:
    assert event_type_of("acme", "charge.settled") is ProviderEventType.CAPTURED
    assert event_type_of("globex", "CAPTURE_COMPLETE") is ProviderEventType.CAPTURED
    assert event_type_of("globex", "charge.settled") is None


def test_unknown_provider_is_refused_when_name_is_not_known() -> None:
    with pytest.raises(UnknownProviderError):
        provider_name("initech")


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [(1234, "EUR", "12.34"), (5, "EUR", "0.05"), (1234, "JPY", "1234"), (1234, "KWD", "1.234")],
)
def test_decimal_strings_convert_exactly_when_currency_exponent_differs(
    minor: int, currency: str, text: str
) -> None:
    assert minor_to_decimal(minor, currency) == text
    assert decimal_to_minor(text, currency) == minor


@given(st.integers(min_value=0, max_value=10**15), st.sampled_from(["EUR", "JPY", "BHD"]))
def test_decimal_round_trip_is_exact_when_amount_is_large(minor: int, currency: str) -> None:
    assert decimal_to_minor(minor_to_decimal(minor, currency), currency) == minor


@pytest.mark.parametrize("text", ["12.345", "1e3", "-1.00", "12,34", "", "0x10", "01.00"])
def test_malformed_decimal_is_refused_when_globex_sends_it(text: str) -> None:
    with pytest.raises(ValueError):
        decimal_to_minor(text, "EUR")


def test_acme_response_reads_as_our_result_when_charge_settles() -> None:
    adapter = AcmeAdapter("key")
    request = adapter.authorize(
        card_token="tok_visa", amount_minor=1000, currency="EUR", key="k1", capture=True
    )
    assert request.headers["Idempotency-Key"] == "k1"
    assert request.json is not None
    assert request.json["amount"] == 1000
    reading = adapter.read(
        request,
        200,
        {"id": "ch_1", "status": "SETTLED", "amount": 1000, "currency": "EUR"},
    )
    assert reading.outcome is ProviderOutcome.APPROVED
    assert (reading.provider_reference, reading.amount_minor) == ("ch_1", 1000)


def test_acme_float_amount_is_unreadable_when_provider_sends_it() -> None:
    adapter = AcmeAdapter("key")
    request = adapter.void(reference="ch_1", key="k")
    with pytest.raises(UnreadableResponseError):
        adapter.read(request, 200, {"id": "ch_1", "status": "VOIDED", "amount": 10.0})


def test_globex_envelope_reads_as_our_result_when_refund_completes() -> None:
    adapter = GlobexAdapter("key")
    request = adapter.refund(reference="gx_1", amount_minor=250, currency="EUR", key="k2")
    assert request.headers["Globex-Request-Key"] == "k2"
    assert request.json == {"money": {"value": "2.50", "currency": "EUR"}}
    reading = adapter.read(
        request,
        200,
        {
            "data": {
                "paymentId": "gx_1",
                "refundId": "gxr_9",
                "state": "COMPLETE",
                "kind": "refund",
                "money": {"value": "2.50", "currency": "EUR"},
            },
            "meta": {},
        },
    )
    assert reading.outcome is ProviderOutcome.APPROVED
    assert reading.operation is ProviderOperation.REFUND
    assert (reading.provider_reference, reading.operation_reference) == ("gx_1", "gxr_9")
    assert reading.amount_minor == 250


def test_globex_rejection_carries_reason_when_card_is_declined() -> None:
    adapter = GlobexAdapter("key")
    request = adapter.authorize(
        card_token="tok_decline", amount_minor=100, currency="EUR", key="k", capture=False
    )
    reading = adapter.read(
        request,
        200,
        {"data": {"paymentId": "gx_2", "state": "REJECTED", "reason": "DO_NOT_HONOUR"}},
    )
    assert reading.outcome is ProviderOutcome.DECLINED
    assert reading.decline_code == "DO_NOT_HONOUR"
