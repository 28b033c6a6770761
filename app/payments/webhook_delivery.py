"""Merchant webhook delivery with Standard Webhooks signatures: claiming, signing,
attempts, recording and backoff.

- `webhook-id` is the event id, the same on every attempt; `webhook-timestamp` and the
  signature are made fresh per attempt (the `standardwebhooks` library signs).
- At most `webhook_max_attempts` attempts on the Standard Webhooks schedule scaled by a
  setting, capped, with +-20 % jitter; 429/503 honour `Retry-After` (capped too); 410
  disables the endpoint; redirects are not followed; each attempt has a 15 s timeout.
- After the last attempt the delivery is dead-lettered (a metric counts it); the CLI
  lists dead letters and replays one (`dead_letters`).
- The endpoint's URL is checked again before every attempt (`webhook_endpoints.check_url`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook

from app.payments.config import STANDARD_SCHEDULE_S
from app.payments.saga import Runtime
from app.payments.webhook_endpoints import SECRET_PATH, UnsafeWebhookUrlError, check_url
from app.platform.errors import ValidationError
from app.platform.utc import rfc3339

# The logger keeps its name from before the split so log queries and alerts still match.
log = structlog.get_logger("moneypath.payments.webhooks_out")

MAX_RETRY_AFTER_S = 3600.0
MAX_DELIVERIES_PER_CYCLE = 50
MAX_RESPONSE_BYTES_KEPT = 200

DELIVERIES = Counter(
    "moneypath_webhook_deliveries_total",
    "Merchant webhook delivery attempts, by result.",
    ["result"],
)
DEAD_LETTERS = Counter(
    "moneypath_webhook_dead_letters_total",
    "Merchant webhook deliveries given up after the last attempt.",
)


def next_delay_s(attempts_made: int, scale: float, rng: random.Random | None = None) -> float:
    """Delay before attempt `attempts_made + 1`: the schedule's step, scaled, +-20 % jitter."""
    chooser = rng or random.SystemRandom()
    index = min(attempts_made, len(STANDARD_SCHEDULE_S) - 1)
    base = STANDARD_SCHEDULE_S[index] * scale
    cap = STANDARD_SCHEDULE_S[-1] * scale
    return float(min(cap, base * chooser.uniform(0.8, 1.2)))


def retry_after_s(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), capped."""
    if not value:
        return None
    if value.strip().isdigit():
        return min(float(value.strip()), MAX_RETRY_AFTER_S)
    try:
        from email.utils import parsedate_to_datetime

        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, min((moment - datetime.now(UTC)).total_seconds(), MAX_RETRY_AFTER_S))


Outcome = tuple[str, int | None, float | None, str | None]  # result, status, wait_s, error


@dataclass(frozen=True, slots=True)
class Due:
    id: int
    endpoint_id: str
    event_id: str
    body: str
    attempts: int
    url: str
    enabled: bool


async def _claim_due(rt: Runtime, limit: int) -> list[Due]:
    async def claim(session: AsyncSession) -> list[Due]:
        rows = await session.execute(
            text(
                """
                SELECT d.id, d.endpoint_id, d.event_id, d.body, d.attempts, e.url, e.enabled
                FROM payments.deliveries d JOIN payments.webhook_endpoints e
                  ON e.id = d.endpoint_id
                WHERE d.status = 'pending' AND d.next_attempt_at <= now()
                ORDER BY d.next_attempt_at, d.id LIMIT :limit
                FOR UPDATE OF d SKIP LOCKED
                """
            ),
            {"limit": limit},
        )
        due = [Due(**dict(row._mapping)) for row in rows]
        if due:
            # Lease: while this worker sends, the rows are not due for anyone else.
            await session.execute(
                text(
                    "UPDATE payments.deliveries SET next_attempt_at = now()"
                    " + make_interval(secs => :lease) WHERE id = ANY(:ids)"
                ),
                {"lease": rt.config.webhook_timeout_s + 30, "ids": [item.id for item in due]},
            )
        return due

    return await rt.tx(claim)


async def _secret(rt: Runtime, endpoint_id: str) -> str:
    if rt.vault is None:
        raise ValidationError("no secret store")
    data = await asyncio.to_thread(
        rt.vault.read_secret, SECRET_PATH.format(endpoint_id=endpoint_id)
    )
    if data is None or "secret" not in data:
        raise ValidationError(f"no secret for {endpoint_id}")
    return str(data["secret"])


def signed_headers(
    secret: str, event_id: str, body: str, now: datetime | None = None
) -> dict[str, str]:
    moment = now or datetime.now(UTC)
    signature = Webhook(secret).sign(event_id, moment, body)
    return {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
    }


async def _attempt(rt: Runtime, http: httpx.AsyncClient, item: Due) -> Outcome:
    """One attempt: (result, status code, retry-after seconds, error)."""
    if not item.enabled:
        return "cancelled", None, None, "endpoint disabled"
    try:
        await check_url(
            item.url,
            allow_insecure=rt.config.allow_insecure_webhook_urls,
            production=rt.config.production,
        )
    except UnsafeWebhookUrlError as error:
        return "failed", None, None, error.detail
    try:
        secret = await _secret(rt, item.endpoint_id)
    except ValidationError as error:
        # A lost secret is the operator's to fix; it fails this delivery (retried, then
        # dead-lettered, so it is visible) instead of the whole cycle for every endpoint.
        log.error("webhook_secret_missing", endpoint_id=item.endpoint_id)
        return "failed", None, None, str(error.detail)
    headers = signed_headers(secret, item.event_id, item.body)
    try:
        response = await http.post(
            item.url,
            content=item.body.encode(),
            headers=headers,
            timeout=rt.config.webhook_timeout_s,
            follow_redirects=False,
        )
    except httpx.HTTPError as error:
        return "failed", None, None, type(error).__name__
    if 200 <= response.status_code < 300:
        return "delivered", response.status_code, None, None
    if response.status_code == 410:
        return "gone", 410, None, None
    wait = None
    if response.status_code in (429, 503):
        wait = retry_after_s(response.headers.get("retry-after"))
    return "failed", response.status_code, wait, response.text[:MAX_RESPONSE_BYTES_KEPT]


async def deliver_due(
    rt: Runtime, http: httpx.AsyncClient, *, limit: int = MAX_DELIVERIES_PER_CYCLE
) -> int:
    """Send every due delivery once; returns how many (at most `limit`).

    Endpoints are served concurrently, but one endpoint's deliveries go one after another
    in the order their events were relayed, so a receiver that is keeping up sees a
    payment's events in order. That is best effort, not a promise: a failed attempt is
    retried later while newer events go ahead, so receivers order by the event's
    `created_at` and the payment's own state (docs/money-path.md)."""
    due = await _claim_due(rt, limit)
    by_endpoint: dict[str, list[Due]] = {}
    for item in due:
        by_endpoint.setdefault(item.endpoint_id, []).append(item)

    async def send_in_order(items: list[Due]) -> list[Outcome]:
        return [await _attempt(rt, http, item) for item in items]

    sent = await asyncio.gather(*(send_in_order(items) for items in by_endpoint.values()))
    for items, outcomes in zip(by_endpoint.values(), sent, strict=True):
        for item, outcome in zip(items, outcomes, strict=True):
            await rt.tx(functools.partial(_record, rt, item=item, outcome=outcome))
    return len(due)


async def _record(rt: Runtime, session: AsyncSession, *, item: Due, outcome: Outcome) -> None:
    result, status_code, wait, error = outcome
    attempts = item.attempts + (0 if result == "cancelled" else 1)
    if result == "delivered":
        status = "delivered"
    elif result in ("gone", "cancelled"):
        status = "cancelled"
    elif attempts >= rt.config.webhook_max_attempts:
        status = "dead"
        DEAD_LETTERS.inc()
        log.warning("webhook_dead_lettered", delivery_id=item.id, event_id=item.event_id)
    else:
        status = "pending"
    DELIVERIES.labels(result=result if status != "dead" else "dead").inc()
    delay = wait if wait is not None else next_delay_s(attempts, rt.config.webhook_schedule_scale)
    await session.execute(
        text(
            """
            UPDATE payments.deliveries SET status = :status, attempts = :attempts,
                last_status_code = :code, last_error = :error, updated_at = now(),
                next_attempt_at = now() + make_interval(secs => :delay)
            WHERE id = :id
            """
        ),
        {
            "status": status,
            "attempts": attempts,
            "code": status_code,
            "error": error,
            "delay": delay,
            "id": item.id,
        },
    )
    if result == "gone":
        # 410 Gone: the receiver says the endpoint no longer exists; stop sending to it.
        await session.execute(
            text(
                "UPDATE payments.webhook_endpoints SET enabled = false,"
                " disabled_reason = 'receiver answered 410 Gone' WHERE id = :id"
            ),
            {"id": item.endpoint_id},
        )
        await session.execute(
            text(
                "UPDATE payments.deliveries SET status = 'cancelled', updated_at = now()"
                " WHERE endpoint_id = :id AND status = 'pending'"
            ),
            {"id": item.endpoint_id},
        )


def event_body(
    event_id: str, event_type: str, occurred_at: datetime, payload: dict[str, Any]
) -> str:
    """The merchant-facing event, serialized once: every attempt sends these exact bytes."""
    data = {key: value for key, value in payload.items() if key != "owner"}
    created = rfc3339(occurred_at)
    return json.dumps(
        {"id": event_id, "type": event_type, "created_at": created, "data": data},
        separators=(",", ":"),
        sort_keys=True,
    )
