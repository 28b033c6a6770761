"""Inbound provider webhooks: Standard Webhooks verification, then each provider's payload.

Signed content is `{webhook-id}.{webhook-timestamp}.{body}`, HMAC-SHA256 with the key in
the provider's `whsec_` secret, sent as `v1,<base64>` (several, space-separated, during a
key rotation). We verify it here rather than with `standardwebhooks.Webhook.verify` so
that malformed headers, non-UTF-8 bodies and our configurable clock tolerance all end in
one WebhookSignatureError; the tests check our verdict against that library's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from app.providers.domain import (
    ProviderEvent,
    ProviderName,
    WebhookSignatureError,
    decimal_to_minor,
    event_type_of,
)

MAX_WEBHOOK_BYTES = 256 * 1024
MAX_SIGNATURES = 8
_ID_MAX = 255


def secret_key(secret: str) -> bytes:
    raw = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("webhook secret is not whsec_ + base64") from None
    if len(key) < 16:
        raise ValueError("webhook secret is shorter than 16 bytes")
    return key


def signature_of(secret: str, message_id: str, timestamp: str, body: bytes) -> str:
    signed = message_id.encode() + b"." + timestamp.encode() + b"." + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    provider: ProviderName,
    secret: str | Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: int,
    now: float | None = None,
) -> ProviderEvent:
    """Check the signature and timestamp, then read the provider's payload.

    Raises WebhookSignatureError for every failure, without saying which secret was tried.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    message_id = lowered.get("webhook-id", "")
    timestamp = lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature", "")
    if not message_id or not timestamp or not signatures:
        raise WebhookSignatureError("webhook-id, webhook-timestamp and webhook-signature needed")
    if len(message_id) > _ID_MAX or len(body) > MAX_WEBHOOK_BYTES:
        raise WebhookSignatureError("webhook id or body too large")
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise WebhookSignatureError("webhook-timestamp is not a unix time")
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_s:
        raise WebhookSignatureError("webhook-timestamp outside the tolerance window")
    # During a rotation Vault holds the new secret and the previous one; either may sign.
    candidates = [secret] if isinstance(secret, str) else list(secret)
    expected = [
        signature_of(candidate, message_id, timestamp, body).split(",", 1)[1].encode()
        for candidate in candidates
    ]
    offered = [
        value.encode()
        for version, _, value in (
            item.partition(",") for item in signatures.split()[:MAX_SIGNATURES]
        )
        if version == "v1"
    ]
    if not any(hmac.compare_digest(mine, theirs) for mine in expected for theirs in offered):
        raise WebhookSignatureError("no webhook signature matches")
    try:
        payload = json.loads(body)
        return _event(provider, message_id, payload)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        # Signed but unreadable: the provider changed its format. Treat it as unverifiable
        # so the caller falls back to asking the status endpoint.
        raise WebhookSignatureError(f"signed webhook body unreadable: {error}") from None


def _event(provider: ProviderName, message_id: str, payload: Any) -> ProviderEvent:
    if provider == "acme":
        raw_type = str(payload["type"])
        data = payload["data"]
        amount = data.get("amount")
        if amount is not None and (not isinstance(amount, int) or isinstance(amount, bool)):
            raise ValueError("acme amount is not an integer")
        occurred = datetime.fromtimestamp(int(payload["created"]), tz=UTC)
        reference = str(data.get("charge") or data["id"])
        operation_reference = str(data["id"])
        key = data.get("idempotency_key")
        currency = data.get("currency")
    else:
        raw_type = str(payload["eventType"])
        data = payload["payload"]
        money = data.get("money")
        currency = money["currency"] if isinstance(money, dict) else None
        amount = decimal_to_minor(str(money["value"]), str(currency)) if currency else None
        occurred = datetime.fromisoformat(str(payload["occurredAt"]))
        if occurred.tzinfo is None:
            raise ValueError("globex occurredAt has no offset")
        occurred = occurred.astimezone(UTC)
        reference = str(data.get("paymentId") or data["transferId"])
        own = data.get("captureId") or data.get("refundId") or data.get("cancellationId")
        operation_reference = str(own or reference)
        key = data.get("requestKey")
    event_type = event_type_of(provider, raw_type)
    if event_type is None:
        raise ValueError(f"unknown event type {raw_type[:60]!r}")
    return ProviderEvent(
        event_id=message_id,
        provider=provider,
        type=event_type,
        raw_type=raw_type,
        provider_reference=reference,
        operation_reference=operation_reference,
        idempotency_key=str(key) if key else None,
        amount_minor=amount,
        currency=str(currency) if currency else None,
        occurred_at=occurred,
    )
