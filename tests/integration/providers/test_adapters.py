"""The adapters against the real simulator process: vocabularies, idempotency, retries,
the breaker, and finding out what really happened after a lost response."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from app.entrypoints.devstack import Stack
from app.entrypoints.launchers.processes import free_port
from app.providers.adapters import AcmeAdapter, Request
from app.providers.api import (
    ProviderClients,
    ProviderOperation,
    ProviderOutcome,
    ProviderSecrets,
    ProviderSettings,
    ProviderUnavailableError,
)
from app.providers.caller import Caller
from tests.integration.providers.helpers import (
    FAST,
    authorize,
    capture,
    charges,
    fault,
    key,
    provider_secrets,
    refund,
    requests_seen,
    run,
    sim,
)

pytestmark = pytest.mark.integration
BOTH = pytest.mark.parametrize("provider", ["acme", "globex"])


@BOTH
def test_payment_lifecycle_maps_to_our_outcomes_when_provider_approves(
    stack: Stack, provider: str
) -> None:
    async def lifecycle(providers: ProviderClients) -> None:
        auth = await authorize(providers, provider, 10_00)
        assert auth.outcome is ProviderOutcome.APPROVED
        assert auth.raw_status == ("AUTHORIZED" if provider == "acme" else "COMPLETE")
        assert (auth.amount_minor, auth.currency, auth.attempts) == (1000, "EUR", 1)
        reference = auth.provider_reference
        assert reference is not None
        captured = await capture(providers, provider, reference, 600)
        assert captured.outcome is ProviderOutcome.APPROVED
        assert captured.operation is ProviderOperation.CAPTURE
        assert captured.provider_reference == reference
        assert captured.amount_minor == 600
        refunds = [
            await refund(providers, provider, reference, amount) for amount in (200, 300, 200)
        ]
        assert [r.outcome for r in refunds] == [
            ProviderOutcome.APPROVED,
            ProviderOutcome.APPROVED,
            ProviderOutcome.FAILED,
        ]
        assert refunds[0].operation_reference != refunds[1].operation_reference
        assert refunds[2].decline_code in {"amount_exceeds_captured", "AMOUNT_EXCEEDS_CAPTURED"}
        void = await providers.void(provider, provider_reference=reference, idempotency_key=key())
        assert void.outcome is ProviderOutcome.FAILED  # captured charges cannot be voided
        other = await authorize(providers, provider, 500)
        assert other.provider_reference is not None
        voided = await providers.void(
            provider, provider_reference=other.provider_reference, idempotency_key=key()
        )
        assert voided.outcome is ProviderOutcome.APPROVED
        payout = await providers.payout(
            provider,
            bank_token="btok_ok",
            amount_minor=12_345,
            currency="JPY",
            idempotency_key=key(),
        )
        assert payout.outcome is ProviderOutcome.APPROVED
        assert (payout.amount_minor, payout.currency) == (12_345, "JPY")

    run(lifecycle, stack)


@BOTH
def test_decline_is_a_result_not_an_error_when_card_is_declined(
    stack: Stack, provider: str
) -> None:
    result = run(
        lambda providers: authorize(
            providers, provider, 100, card_token="tok_decline", capture=True
        ),
        stack,
    )
    assert result.outcome is ProviderOutcome.DECLINED
    assert result.raw_status == ("DECLINED" if provider == "acme" else "REJECTED")
    assert result.decline_code


@BOTH
def test_same_idempotency_key_makes_one_charge_when_request_is_sent_twice(
    stack: Stack, provider: str
) -> None:
    same = key()

    async def twice(providers: ProviderClients) -> list[str | None]:
        results = [
            await authorize(providers, provider, 777, capture=True, idempotency_key=same)
            for _ in range(2)
        ]
        return [result.provider_reference for result in results]

    before = charges(stack, provider)
    references = run(twice, stack)
    assert references[0] is not None
    assert references[0] == references[1]
    assert charges(stack, provider) == before + 1


@BOTH
def test_retries_are_bounded_when_provider_answers_5xx(stack: Stack, provider: str) -> None:
    before = requests_seen(stack, provider, "capture")
    with (
        fault(stack, provider, "capture", error_rate=1.0),
        pytest.raises(ProviderUnavailableError) as raised,
    ):
        run(
            lambda providers: capture(providers, provider, "ch_missing", 1),
            stack,
        )
    assert raised.value.attempts == 3
    assert raised.value.attempted is True
    assert raised.value.code == "provider_unavailable"
    assert requests_seen(stack, provider, "capture") - before == 3


@BOTH
def test_breaker_opens_then_recovers_through_one_trial_when_provider_heals(
    stack: Stack, provider: str
) -> None:
    async def scenario(providers: ProviderClients) -> None:
        async def refund_unknown() -> object:
            return await refund(providers, provider, "ch_unknown", 1)

        with fault(stack, provider, "refund", error_rate=1.0):
            for _ in range(2):  # 3 + 2 failed attempts reach the threshold of 5
                with pytest.raises(ProviderUnavailableError):
                    await refund_unknown()
            assert providers.breaker_state(provider) == "open"
            seen = requests_seen(stack, provider, "refund")
            with pytest.raises(ProviderUnavailableError) as fast:
                await refund_unknown()
            assert fast.value.attempted is False
            assert requests_seen(stack, provider, "refund") == seen  # failed fast
        await asyncio.sleep(0.7)
        assert providers.breaker_state(provider) == "half_open"
        seen = requests_seen(stack, provider, "refund")
        outcomes = await asyncio.gather(
            *(refund_unknown() for _ in range(6)), return_exceptions=True
        )
        refused = [o for o in outcomes if isinstance(o, ProviderUnavailableError)]
        assert len(refused) == 5
        assert all(not o.attempted for o in refused)
        assert requests_seen(stack, provider, "refund") == seen + 1  # exactly one trial
        assert providers.breaker_state(provider) == "closed"

    run(scenario, stack)


@BOTH
def test_breaker_opens_when_provider_times_out(stack: Stack, provider: str) -> None:
    async def scenario(providers: ProviderClients) -> None:
        started = time.monotonic()
        with (
            fault(stack, provider, "lookup", latency_ms=1500),
            pytest.raises(ProviderUnavailableError) as raised,
        ):
            await providers.lookup(provider, idempotency_key=key())
        assert raised.value.attempted is True
        assert raised.value.attempts == 2
        assert time.monotonic() - started < 2.0  # two 700 ms timeouts plus a short backoff
        assert providers.breaker_state(provider) == "open"

    run(scenario, stack, PROVIDER_RETRY_ATTEMPTS="2", PROVIDER_BREAKER_THRESHOLD="2")


@BOTH
def test_lookup_finds_the_charge_when_response_was_lost(stack: Stack, provider: str) -> None:
    lost = key("lost")

    async def scenario(providers: ProviderClients) -> None:
        with pytest.raises(ProviderUnavailableError) as raised:
            await authorize(
                providers,
                provider,
                4200,
                card_token="tok_lost_response",
                capture=True,
                idempotency_key=lost,
            )
        assert raised.value.attempted is True
        found = await providers.lookup(provider, idempotency_key=lost)
        assert found is not None
        assert found.outcome is ProviderOutcome.APPROVED
        assert found.operation is ProviderOperation.AUTHORIZE
        assert found.amount_minor == 4200
        assert found.provider_reference is not None

    before = charges(stack, provider)
    run(scenario, stack)
    assert charges(stack, provider) == before + 1  # three attempts, one charge


@BOTH
def test_lookup_finds_nothing_when_provider_timed_out_before_processing(
    stack: Stack, provider: str
) -> None:
    timed_out = key("timeout")

    async def scenario(providers: ProviderClients) -> object:
        with pytest.raises(ProviderUnavailableError):
            await authorize(
                providers, provider, 100, card_token="tok_timeout", idempotency_key=timed_out
            )
        return await providers.lookup(provider, idempotency_key=timed_out)

    assert run(scenario, stack, PROVIDER_RETRY_ATTEMPTS="1") is None


def test_unreachable_provider_is_not_attempted_when_nothing_listens(stack: Stack) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ProviderUnavailableError) as raised:
        run(
            lambda providers: authorize(providers, "acme", 1),
            stack,
            PROVIDER_ACME_URL=closed,
        )
    assert raised.value.attempted is False
    assert raised.value.attempts == 3


@BOTH
def test_charge_status_reports_amounts_when_asked_by_reference(stack: Stack, provider: str) -> None:
    async def scenario(providers: ProviderClients) -> None:
        auth = await authorize(providers, provider, 1999)
        assert auth.provider_reference is not None
        await capture(providers, provider, auth.provider_reference, 1500)
        await refund(providers, provider, auth.provider_reference, 250)
        status = await providers.charge_status(provider, provider_reference=auth.provider_reference)
        assert status is not None
        assert (status.amount_minor, status.captured_minor, status.refunded_minor) == (
            1999,
            1500,
            250,
        )
        assert (status.currency, status.voided) == ("EUR", False)
        assert await providers.charge_status(provider, provider_reference="ch_nope") is None

    run(scenario, stack)


@BOTH
def test_hosted_fields_token_charges_and_declines_when_pan_never_reaches_us(
    stack: Stack, provider: str
) -> None:
    def tokenize(pan: str) -> str:
        if provider == "acme":
            return str(sim(stack, "POST", "/acme/hosted-fields/tokens", {"pan": pan})["token"])
        body = sim(stack, "POST", "/globex/hosted-fields/tokenize", {"cardNumber": pan})
        return str(body["data"]["token"])

    good, bad = tokenize("4242424242424242"), tokenize("4000000000000002")
    assert good.startswith("tok_")
    assert "4242" not in good

    async def scenario(providers: ProviderClients) -> list[ProviderOutcome]:
        return [
            (await authorize(providers, provider, 100, card_token=token, capture=True)).outcome
            for token in (good, bad)
        ]

    assert run(scenario, stack) == [ProviderOutcome.APPROVED, ProviderOutcome.DECLINED]
    with pytest.raises(httpx.HTTPStatusError):
        tokenize("4242424242424241")  # fails the Luhn check


@BOTH
def test_wrong_api_key_fails_without_retry_when_provider_refuses_it(
    stack: Stack, provider: str
) -> None:
    wrong = {
        name: ProviderSecrets(api_key="wrong", webhook_secret=secret.webhook_secret)
        for name, secret in provider_secrets(stack).items()
    }

    async def scenario() -> None:
        providers = ProviderClients(ProviderSettings.from_env({**stack.app_env(), **FAST}), wrong)
        try:
            with pytest.raises(ProviderUnavailableError) as raised:
                await providers.lookup(provider, idempotency_key=key())
            assert raised.value.attempted is False
            assert raised.value.attempts == 1
            assert providers.breaker_state(provider) == "closed"
        finally:
            await providers.aclose()

    asyncio.run(scenario())


def test_each_attempt_logs_one_line_and_breaker_is_a_metric_when_calls_fail(
    stack: Stack,
) -> None:
    async def scenario(providers: ProviderClients) -> list[dict[str, object]]:
        with (
            fault(stack, "globex", "void", error_rate=1.0),
            capture_logs() as logs,
            pytest.raises(ProviderUnavailableError),
        ):
            await providers.void("globex", provider_reference="gx_1", idempotency_key=key())
        gauge = REGISTRY.get_sample_value(
            "moneypath_provider_breaker_state", {"provider": "globex", "state": "open"}
        )
        assert gauge == 1.0
        return [line for line in logs if line["event"] == "provider_call"]

    lines = run(scenario, stack, PROVIDER_BREAKER_THRESHOLD="3")
    assert [line["attempt"] for line in lines] == [1, 2, 3]
    for line in lines:
        assert line["provider"] == "globex"
        assert line["operation"] == "void"
        assert line["status"] == "503"
        assert isinstance(line["latency_ms"], float)
    assert [line["breaker"] for line in lines] == ["closed", "closed", "open"]


def test_request_without_idempotency_key_is_not_retried_when_provider_fails(
    stack: Stack,
) -> None:
    api_key = provider_secrets(stack)["acme"].api_key
    settings = ProviderSettings.from_env({**stack.app_env(), **FAST})

    async def scenario() -> int:
        async with httpx.AsyncClient() as http:
            caller = Caller(
                AcmeAdapter(api_key),
                base_url=settings.base_urls["acme"],
                settings=settings,
                http=http,
            )
            unsafe = Request(
                "POST",
                "/v1/payouts",
                {"bank_token": "b", "amount": 1, "currency": "EUR"},
                {"Authorization": f"Bearer {api_key}"},
                ProviderOperation.PAYOUT,
            )
            with pytest.raises(ProviderUnavailableError) as raised:
                await caller.call(unsafe)
            return raised.value.attempts

    before = requests_seen(stack, "acme", "payout")
    with fault(stack, "acme", "payout", error_rate=1.0):
        assert asyncio.run(scenario()) == 1
    assert requests_seen(stack, "acme", "payout") == before + 1


@BOTH
def test_fault_api_loses_responses_and_times_out_when_rates_are_set(
    stack: Stack, provider: str
) -> None:
    async def scenario(providers: ProviderClients) -> None:
        auth = await authorize(providers, provider, 900, capture=True)
        reference = auth.provider_reference
        assert reference is not None
        lost, held = key("lost"), key("held")
        with (
            fault(stack, provider, "refund", lost_response_rate=1.0),
            pytest.raises(ProviderUnavailableError),
        ):
            await refund(providers, provider, reference, 300, idempotency_key=lost)
        with (
            fault(stack, provider, "refund", timeout_rate=1.0),
            pytest.raises(ProviderUnavailableError),
        ):
            await refund(providers, provider, reference, 100, idempotency_key=held)
        found = await providers.lookup(provider, idempotency_key=lost)
        assert found is not None
        assert (found.outcome, found.operation, found.amount_minor) == (
            ProviderOutcome.APPROVED,
            ProviderOperation.REFUND,
            300,
        )
        assert await providers.lookup(provider, idempotency_key=held) is None
        status = await providers.charge_status(provider, provider_reference=reference)
        assert status is not None
        assert status.refunded_minor == 300  # three lost attempts, one refund

    run(scenario, stack, PROVIDER_RETRY_ATTEMPTS="3", PROVIDER_BREAKER_THRESHOLD="50")


@BOTH
def test_key_reused_for_another_request_is_refused_when_amount_differs(
    stack: Stack, provider: str
) -> None:
    same = key()

    async def scenario(providers: ProviderClients) -> list[ProviderOutcome]:
        outcomes = []
        for amount in (100, 200):
            result = await authorize(providers, provider, amount, idempotency_key=same)
            outcomes.append(result.outcome)
            if result.outcome is ProviderOutcome.FAILED:
                assert (result.decline_code or "").lower() == "idempotency_key_reused"
        return outcomes

    before = charges(stack, provider)
    assert run(scenario, stack) == [ProviderOutcome.APPROVED, ProviderOutcome.FAILED]
    assert charges(stack, provider) == before + 1


def test_lookup_of_a_refused_capture_names_the_operation_when_acme_refused_it(
    stack: Stack,
) -> None:
    refused = key()

    async def scenario(providers: ProviderClients) -> None:
        result = await capture(providers, "acme", "ch_nope", 5, idempotency_key=refused)
        assert result.outcome is ProviderOutcome.FAILED
        found = await providers.lookup("acme", idempotency_key=refused)
        assert found is not None
        assert (found.outcome, found.operation) == (
            ProviderOutcome.FAILED,
            ProviderOperation.CAPTURE,
        )
        assert found.decline_code == "charge_not_found"

    run(scenario, stack)
