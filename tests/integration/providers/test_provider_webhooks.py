"""Webhooks sent by the real simulator: signed per Standard Webhooks with each provider's
secret, verified by our adapter and by the standardwebhooks library; duplicates keep their
id, and a delay fault delivers them out of order."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.entrypoints.devstack import Stack
from app.providers.api import (
    ProviderEventType,
    WebhookSignatureError,
)
from tests.integration.providers.helpers import (
    authorize,
    capture,
    clients,
    fault,
    provider_secrets,
    sim,
)

pytestmark = pytest.mark.integration
Received = list[tuple[str, dict[str, str], bytes]]


@pytest.fixture
def receiver(stack: Stack) -> Iterator[tuple[Received, threading.Event]]:
    received: Received = []
    arrived = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            received.append((self.path, dict(self.headers.items()), body))
            arrived.set()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sim(stack, "PUT", "/_sim/webhooks", {"target": f"http://127.0.0.1:{server.server_port}"})
    try:
        yield received, arrived
    finally:
        sim(stack, "PUT", "/_sim/webhooks", {"target": stack.api_url})
        server.shutdown()
        server.server_close()


def _wait_for(received: Received, count: int, reference: str, timeout_s: float = 10) -> Received:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ours = [item for item in received if reference.encode() in item[2]]
        if len(ours) >= count:
            return ours
        time.sleep(0.05)
    raise AssertionError(f"only {len(ours)} of {count} webhooks for {reference} arrived")


@pytest.mark.parametrize("provider", ["acme", "globex"])
def test_webhooks_verify_dedupe_by_id_and_arrive_out_of_order_when_faults_ask(
    stack: Stack, provider: str, receiver: tuple[Received, threading.Event]
) -> None:
    received, _ = receiver
    secrets = provider_secrets(stack)
    providers = clients(stack)

    async def pay() -> str:
        auth = await authorize(providers, provider, 2500)
        assert auth.provider_reference is not None
        await capture(providers, provider, auth.provider_reference, 2500)
        await providers.aclose()
        return auth.provider_reference

    with (
        fault(stack, provider, "authorize", webhook_delay_ms=800),
        fault(stack, provider, "capture", webhook_duplicates=1),
    ):
        reference = asyncio.run(pay())
        ours = _wait_for(received, 3, reference)

    assert {path for path, _, _ in ours} == {f"/v1/webhooks/providers/{provider}"}
    events = [providers.verify_webhook(provider, headers, body) for _, headers, body in ours]
    for _, headers, body in ours:  # the library agrees with us
        Webhook(secrets[provider].webhook_secret).verify(body, headers)
    assert [event.type for event in events] == [
        ProviderEventType.CAPTURED,
        ProviderEventType.CAPTURED,
        ProviderEventType.AUTHORIZED,
    ]
    assert events[0].event_id == events[1].event_id  # a duplicate keeps its webhook-id
    assert events[2].event_id != events[0].event_id
    assert all(event.provider_reference == reference for event in events)
    assert events[0].amount_minor == 2500

    _, headers, body = ours[0]
    tampered = body.replace(b"2500", b"9500").replace(b"25.00", b"95.00")
    assert tampered != body
    with pytest.raises(WebhookSignatureError):
        providers.verify_webhook(provider, headers, tampered)
    with pytest.raises(WebhookVerificationError):
        Webhook(secrets[provider].webhook_secret).verify(tampered, headers)
    other = "globex" if provider == "acme" else "acme"
    with pytest.raises(WebhookSignatureError):
        providers.verify_webhook(other, headers, body)
