"""Signed webhook delivery, as a provider would do it: Standard Webhooks, own secret each.

Events wait in a bounded queue; one sender task per simulator delivers them to
`{target}/v1/webhooks/providers/{provider}` with a few retries (same `webhook-id`, fresh
timestamp and signature per attempt). Signing uses the `standardwebhooks` library, so the
app's own verifier is checked against an independent implementation. Duplicates reuse
the id; a delay lets later events overtake earlier ones. A bounded log of what was sent
(and how it ended) is kept for tests and for a developer's eyes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

MAX_QUEUE = 10_000
MAX_IN_FLIGHT = 500  # deliveries waiting or sending at once; the rest wait in the queue
MAX_LOG = 2_000


@dataclass
class Delivery:
    provider: str
    message_id: str
    body: bytes
    not_before: float
    attempts: int = 0
    status: str = "queued"
    last_code: int | None = None
    sent_at: list[str] = field(default_factory=list)


class WebhookSender:
    def __init__(
        self,
        secrets_by_provider: dict[str, str],
        *,
        target: str | None,
        attempts: int,
        timeout_s: float,
    ) -> None:
        self._signers = {name: Webhook(secret) for name, secret in secrets_by_provider.items()}
        self.target = target
        self.attempts = attempts
        self.timeout_s = timeout_s
        self.paused = False
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue(MAX_QUEUE)
        self.log: deque[Delivery] = deque(maxlen=MAX_LOG)
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._http = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        for task in [self._task, *self._pending]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._http is not None:
            await self._http.aclose()

    def emit(
        self, provider: str, payload: dict[str, Any], *, duplicates: int, delay_s: float
    ) -> str:
        """Queue one event (plus `duplicates` copies with the same id). Returns its id."""
        message_id = "msg_" + secrets.token_hex(12)
        body = json.dumps(payload, separators=(",", ":")).encode()
        for _ in range(1 + duplicates):
            delivery = Delivery(provider, message_id, body, time.monotonic() + delay_s)
            self.log.append(delivery)
            try:
                self._queue.put_nowait(delivery)
            except asyncio.QueueFull:
                delivery.status = "dropped"
                self.dropped += 1
        return message_id

    def headers(self, delivery: Delivery) -> dict[str, str]:
        now = datetime.now(UTC)
        signature = self._signers[delivery.provider].sign(
            delivery.message_id, now, delivery.body.decode()
        )
        return {
            "content-type": "application/json",
            "webhook-id": delivery.message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }

    async def _run(self) -> None:
        while True:
            delivery = await self._queue.get()
            await self._slots.acquire()
            # Each delivery waits on its own, so a delayed one does not hold up the rest.
            task = asyncio.create_task(self._deliver(delivery))
            self._pending.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        self._slots.release()

    async def _deliver(self, delivery: Delivery) -> None:
        wait = delivery.not_before - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        backoff = 0.2
        while delivery.attempts < self.attempts:
            while self.paused:
                await asyncio.sleep(0.05)
            if self.target is None or self._http is None:
                delivery.status = "no_target"
                return
            delivery.attempts += 1
            delivery.sent_at.append(datetime.now(UTC).isoformat())
            try:
                response = await self._http.post(
                    f"{self.target}/v1/webhooks/providers/{delivery.provider}",
                    content=delivery.body,
                    headers=self.headers(delivery),
                    timeout=self.timeout_s,
                )
                delivery.last_code = response.status_code
                if response.status_code < 300:
                    delivery.status = "delivered"
                    return
            except httpx.HTTPError:
                delivery.last_code = None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
        delivery.status = "failed"

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "provider": item.provider,
                "webhook_id": item.message_id,
                "payload": json.loads(item.body),
                "status": item.status,
                "attempts": item.attempts,
                "last_code": item.last_code,
            }
            for item in self.log
        ]
