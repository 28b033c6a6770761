"""Merchant webhook endpoints: URL safety and registration.

- A secret is `whsec_` + base64 of 32 random bytes, kept in OpenBao (kv) and shown once.
- In production an endpoint that resolves to a loopback, private, link-local or otherwise
  non-public address is refused at registration and again at every delivery (SSRF: DNS
  can change between the two; `webhook_delivery` calls `check_url` before each attempt).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import secrets
import socket
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.payments import events, store
from app.payments.saga import Runtime
from app.platform.errors import ValidationError

SECRET_PATH = "moneypath/webhook-endpoints/{endpoint_id}"  # noqa: S105 - a Vault path
SECRET_BYTES = 32
KNOWN_EVENT_TYPES = frozenset({*(event.EVENT_TYPE for event in events.MERCHANT_EVENTS), "*"})


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
