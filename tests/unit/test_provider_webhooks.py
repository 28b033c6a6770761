"""Provider webhook verification, checked against the standardwebhooks library."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.providers.api import (
    ProviderClients,
    ProviderEventType,
    ProviderSecrets,
    ProviderSettings,
    WebhookSignatureError,
)
from app.providers.webhooks import verify

ACME_SECRET = "whsec_" + base64.b64encode(b"a" * 32).decode()
GLOBEX_SECRET = "whsec_" + base64.b64encode(b"g" * 32).decode()
ACME_BODY = json.dumps(
    {
        "type": "charge.settled",
        "created": 1_796_000_000,
        "data": {
            "id": "cap_1",
            "charge": "ch_1",
            "amount": 1234,
            "currency": "EUR",
            "idempotency_key": "k1",
        },
    }
).encode()
GLOBEX_BODY = json.dumps(
    {
        "eventType": "REFUND_COMPLETE",
        "occurredAt": "2026-12-01T10:00:00Z",
        "payload": {
            "paymentId": "gx_1",
            "refundId": "gxr_1",
            "money": {"value": "12.34", "currency": "EUR"},
            "requestKey": "k2",
        },
    }
).encode()


def _signed(secret: str, body: bytes, *, at: datetime | None = None) -> dict[str, str]:
    moment = at or datetime.now(UTC)
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign("msg_1", moment, body.decode()),
    }


def test_acme_event_verifies_and_reads_when_signed_by_the_library() -> None:
    event = verify("acme", ACME_SECRET, _signed(ACME_SECRET, ACME_BODY), ACME_BODY, tolerance_s=300)
    assert event.type is ProviderEventType.CAPTURED
    assert (event.provider_reference, event.operation_reference) == ("ch_1", "cap_1")
    assert (event.amount_minor, event.currency, event.idempotency_key) == (1234, "EUR", "k1")
    assert event.event_id == "msg_1"
    assert event.occurred_at.tzinfo is not None


def test_globex_event_verifies_and_reads_when_signed_by_the_library() -> None:
    headers = _signed(GLOBEX_SECRET, GLOBEX_BODY)
    event = verify("globex", GLOBEX_SECRET, headers, GLOBEX_BODY, tolerance_s=300)
    assert event.type is ProviderEventType.REFUNDED
    assert (event.provider_reference, event.operation_reference) == ("gx_1", "gxr_1")
    assert event.amount_minor == 1234
    assert event.occurred_at == datetime(2026, 12, 1, 10, tzinfo=UTC)


def test_tampered_body_fails_ours_and_the_library_when_one_byte_changes() -> None:
    headers = _signed(ACME_SECRET, ACME_BODY)
    tampered = ACME_BODY.replace(b"1234", b"9234")
    with pytest.raises(WebhookSignatureError):
        verify("acme", ACME_SECRET, headers, tampered, tolerance_s=300)
    with pytest.raises(WebhookVerificationError):
        Webhook(ACME_SECRET).verify(tampered, headers)


def test_other_providers_secret_fails_when_webhook_claims_wrong_provider() -> None:
    headers = _signed(GLOBEX_SECRET, ACME_BODY)
    with pytest.raises(WebhookSignatureError):
        verify("acme", ACME_SECRET, headers, ACME_BODY, tolerance_s=300)


def test_stale_timestamp_fails_when_outside_tolerance() -> None:
    old = datetime.fromtimestamp(time.time() - 600, tz=UTC)
    headers = _signed(ACME_SECRET, ACME_BODY, at=old)
    with pytest.raises(WebhookSignatureError):
        verify("acme", ACME_SECRET, headers, ACME_BODY, tolerance_s=300)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"webhook-id": "msg_1", "webhook-timestamp": "x", "webhook-signature": "v1,AAAA"},
        {
            "webhook-id": "msg_1",
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": "garbage",
        },
        {
            "webhook-id": "msg_1",
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": "v1,",
        },
    ],
)
def test_malformed_headers_fail_cleanly_when_signature_is_missing_or_garbled(
    headers: dict[str, str],
) -> None:
    with pytest.raises(WebhookSignatureError):
        verify("acme", ACME_SECRET, headers, ACME_BODY, tolerance_s=300)


def test_rotated_secret_verifies_when_one_of_several_signatures_matches() -> None:
    headers = _signed(ACME_SECRET, ACME_BODY)
    headers["webhook-signature"] = "v1,bm90LXRoaXMtb25l " + headers["webhook-signature"]
    assert verify("acme", ACME_SECRET, headers, ACME_BODY, tolerance_s=300).event_id == "msg_1"


def test_previous_secret_still_verifies_when_a_rotation_is_under_way() -> None:
    new = "whsec_" + base64.b64encode(b"n" * 32).decode()
    headers = _signed(ACME_SECRET, ACME_BODY)
    assert verify("acme", (new, ACME_SECRET), headers, ACME_BODY, tolerance_s=300)
    with pytest.raises(WebhookSignatureError):
        verify("acme", (new,), headers, ACME_BODY, tolerance_s=300)


def test_clients_verify_with_new_secret_when_secrets_are_rotated() -> None:
    old = {
        "acme": ProviderSecrets("k", ACME_SECRET),
        "globex": ProviderSecrets("k", GLOBEX_SECRET),
    }
    providers = ProviderClients(ProviderSettings.from_env({}), old)
    new = "whsec_" + base64.b64encode(b"n" * 32).decode()
    headers = _signed(new, ACME_BODY)
    with pytest.raises(WebhookSignatureError):
        providers.verify_webhook("acme", headers, ACME_BODY)
    providers.rotate_secrets(
        {"acme": ProviderSecrets("k2", new, previous_webhook_secret=ACME_SECRET)}
    )
    assert providers.verify_webhook("acme", headers, ACME_BODY).event_id == "msg_1"
    old_headers = _signed(ACME_SECRET, ACME_BODY)
    assert providers.verify_webhook("acme", old_headers, ACME_BODY).event_id == "msg_1"
    asyncio.run(providers.aclose())
