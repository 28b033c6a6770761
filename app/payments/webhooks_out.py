"""Merchant webhooks: endpoint registration, and delivery with Standard Webhooks signatures.

- A secret is `whsec_` + base64 of 32 random bytes, kept in OpenBao (kv) and shown once.
- `webhook-id` is the event id, the same on every attempt; `webhook-timestamp` and the
  signature are made fresh per attempt (the `standardwebhooks` library signs).
- At most `webhook_max_attempts` attempts on the Standard Webhooks schedule scaled by a
  setting, capped, with +-20 % jitter; 429/503 honour `Retry-After` (capped too); 410
  disables the endpoint; redirects are not followed; each attempt has a 15 s timeout.
- After the last attempt the delivery is dead-lettered (a metric counts it); the CLI
  lists dead letters and replays one.
- In production an endpoint that resolves to a loopback, private, link-local or otherwise
  non-public address is refused at registration and again at every delivery (SSRF: DNS
  can change between the two).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import ipaddress
import json
import random
import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook

from app.payments import store
from app.payments.config import STANDARD_SCHEDULE_S
from app.payments.saga import Runtime
from app.platform.errors import ValidationError
from app.platform.utc import rfc3339

log = structlog.get_logger("moneypath.payments.webhooks_out")

SECRET_PATH = "moneypath/webhook-endpoints/{endpoint_id}"  # noqa: S105 - a Vault path
SECRET_BYTES = 32
MAX_RETRY_AFTER_S = 3600.0
MAX_DELIVERIES_PER_CYCLE = 50
MAX_RESPONSE_BYTES_KEPT = 200
KNOWN_EVENT_TYPES = frozenset(
    {
        "payment.authorized",
        "payment.captured",
        "payment.voided",
        "payment.declined",
        "payment.failed",
        "payment.pending_review",
        "payment.refunded",
        "payout.paid",
        "payout.failed",
        "*",
    }
)

DELIVERIES = Counter(
    "moneypath_webhook_deliveries_total",
    "Merchant webhook delivery attempts, by result.",
    ["result"],
)
DEAD_LETTERS = Counter(
    "moneypath_webhook_dead_letters_total",
    "Merchant webhook deliveries given up after the last attempt.",
)


class UnsafeWebhookUrlError(ValidationError):
    title = "Webhook URL not allowed"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


async def check_url(url: str, *, allow_insecure: bool, production: bool) -> None:
    """Refuse a URL we must not call. Run at registration and before every delivery."""
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise UnsafeWebhookUrlError("the URL must be an absolute http(s) URL")
    if parts.username or parts.password:
        raise UnsafeWebhookUrlError("the URL must not carry credentials")
    if parts.scheme == "http" and not allow_insecure:
        raise UnsafeWebhookUrlError("plain http is allowed only with allow_insecure_webhook_urls")
    host = parts.hostname
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and not allow_insecure and not _is_public(host):
        raise UnsafeWebhookUrlError(
            "loopback and private addresses need allow_insecure_webhook_urls"
        )
    if not production:
        return
    # Production: every address the name resolves to must be public, checked now.
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM), timeout=5
        )
    except (OSError, TimeoutError):
        raise UnsafeWebhookUrlError(f"cannot resolve {host}") from None
    addresses = {str(info[4][0]) for info in infos}
    if not addresses or not all(_is_public(address) for address in addresses):
        raise UnsafeWebhookUrlError(f"{host} resolves to a non-public address")


# ---- registration -------------------------------------------------------------------------


async def create_endpoint(
    rt: Runtime,
    session: AsyncSession,
    *,
    owner: str,
    url: str,
    event_types: list[str],
    description: str | None,
) -> dict[str, Any]:
    await check_url(
        url, allow_insecure=rt.config.allow_insecure_webhook_urls, production=rt.config.production
    )
    unknown = sorted(set(event_types) - KNOWN_EVENT_TYPES)
    if unknown:
        raise ValidationError(f"unknown event types: {', '.join(unknown)}")
    if rt.vault is None:
        raise ValidationError("webhook endpoints need the secret store")
    endpoint_id = store.new_id("we")
    secret = new_secret()
    await asyncio.to_thread(
        rt.vault.write_secret, SECRET_PATH.format(endpoint_id=endpoint_id), {"secret": secret}
    )
    row = (
        await session.execute(
            text(
                "INSERT INTO payments.webhook_endpoints (id, owner, url, event_types, description)"
                " VALUES (:id, :owner, :url, :types, :description) RETURNING created_at"
            ),
            {
                "id": endpoint_id,
                "owner": owner,
                "url": url,
                "types": sorted(set(event_types)),
                "description": description,
            },
        )
    ).one()
    return {
        "id": endpoint_id,
        "url": url,
        "event_types": sorted(set(event_types)),
        "description": description,
        "enabled": True,
        "secret": secret,
        "created_at": store.iso(row.created_at),
    }


async def endpoint_owner(session: AsyncSession, endpoint_id: str) -> str | None:
    found = await session.execute(
        text("SELECT owner FROM payments.webhook_endpoints WHERE id = :id"), {"id": endpoint_id}
    )
    return found.scalar_one_or_none()


# ---- delivery -------------------------------------------------------------------------------


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
                ORDER BY d.next_attempt_at LIMIT :limit
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
    """Send every due delivery once (concurrently, bounded by `limit`); returns how many."""
    due = await _claim_due(rt, limit)
    outcomes = await asyncio.gather(*(_attempt(rt, http, item) for item in due))
    for item, outcome in zip(due, outcomes, strict=True):
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


# ---- dead letters -------------------------------------------------------------------------


async def dead_letters(session: AsyncSession, limit: int = 100) -> list[dict[str, Any]]:
    rows = await session.execute(
        text(
            "SELECT id, endpoint_id, event_id, event_type, attempts, last_status_code, last_error,"
            " updated_at FROM payments.deliveries WHERE status = 'dead' ORDER BY id LIMIT :limit"
        ),
        {"limit": limit},
    )
    return [{**dict(row._mapping), "updated_at": store.iso(row.updated_at)} for row in rows]


async def replay(session: AsyncSession, delivery_id: int) -> bool:
    """Send a dead letter again: a fresh set of attempts, same event id and body."""
    done = await session.execute(
        text(
            "UPDATE payments.deliveries SET status = 'pending', attempts = 0,"
            " next_attempt_at = now(), updated_at = now() WHERE id = :id AND status = 'dead'"
            " RETURNING id"
        ),
        {"id": delivery_id},
    )
    return done.first() is not None


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
