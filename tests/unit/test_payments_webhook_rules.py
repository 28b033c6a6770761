"""Outbound webhook rules without I/O (except name resolution of literal addresses)."""

from __future__ import annotations

import asyncio
import base64
import random

import pytest
from standardwebhooks.webhooks import Webhook

from app.payments.config import STANDARD_SCHEDULE_S, PaymentsConfig
from app.payments.webhook_delivery import next_delay_s, retry_after_s, signed_headers
from app.payments.webhook_endpoints import UnsafeWebhookUrlError, check_url, new_secret
from app.platform.settings import SettingsError


def test_secret_is_whsec_and_base64_of_24_to_64_bytes_when_made() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 64
    assert new_secret() != secret


def test_signature_verifies_with_the_library_and_timestamp_is_fresh_when_signed() -> None:
    secret = new_secret()
    headers = signed_headers(secret, "evt_1", '{"a":1}')
    assert Webhook(secret).verify('{"a":1}', headers) == {"a": 1}
    assert headers["webhook-id"] == "evt_1"


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "http://example.com/hook",
        "https://user:pw@example.com/hook",
        "ftp://example.com/hook",
    ],
)
def test_unsafe_urls_are_refused_when_insecure_urls_are_not_allowed(url: str) -> None:
    with pytest.raises(UnsafeWebhookUrlError):
        asyncio.run(check_url(url, allow_insecure=False, production=True))


def test_loopback_is_allowed_when_insecure_urls_are_allowed_outside_production() -> None:
    asyncio.run(check_url("http://127.0.0.1:9/hook", allow_insecure=True, production=False))


def test_production_refuses_a_name_resolving_to_loopback_when_delivering() -> None:
    with pytest.raises(UnsafeWebhookUrlError):
        asyncio.run(check_url("https://localhost/hook", allow_insecure=False, production=True))


def test_backoff_follows_the_scaled_schedule_with_jitter_and_a_cap_when_retrying() -> None:
    rng = random.Random(7)
    for attempts in range(12):
        base = STANDARD_SCHEDULE_S[min(attempts, len(STANDARD_SCHEDULE_S) - 1)] * 0.001
        delay = next_delay_s(attempts, 0.001, rng)
        assert 0.8 * base <= delay <= min(1.2 * base, STANDARD_SCHEDULE_S[-1] * 0.001)


def test_retry_after_reads_seconds_and_caps_them_when_a_receiver_asks() -> None:
    assert retry_after_s("7") == 7.0
    assert retry_after_s("999999") == 3600.0
    assert retry_after_s(None) is None
    assert retry_after_s("soon") is None


def test_test_pause_hook_is_refused_when_not_in_the_test_environment() -> None:
    with pytest.raises(SettingsError):
        PaymentsConfig.from_env(
            {"MONEYPATH_ENV": "production", "PAYMENTS_TEST_PAUSE_AFTER_PROVIDER": "authorize"}
        )
    config = PaymentsConfig.from_env(
        {"MONEYPATH_ENV": "test", "PAYMENTS_TEST_PAUSE_AFTER_PROVIDER": "authorize"}
    )
    assert config.pause_after_provider == "authorize"
    assert (
        PaymentsConfig.from_env({"MONEYPATH_ENV": "production"}).allow_insecure_webhook_urls
        is False
    )
