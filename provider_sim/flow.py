"""The shared life of one provider request: faults, processing, webhook, answer.

Order: auth -> fault draw -> added latency -> injected 503 (not processed) -> idempotency
key required (400) -> injected
timeout (held, then 504, not processed) -> process (idempotent) -> webhooks for a new
operation -> lost response (processed, then held, then 504) -> the provider's answer.
`tok_timeout` behaves as a timeout and `tok_lost_response` as a lost response, always.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from provider_sim.config import SimConfig
from provider_sim.engine import Engine, KeyReusedError, Operation
from provider_sim.faults import Faults
from provider_sim.webhooks import WebhookSender

MAX_BODY_BYTES = 64 * 1024
MAX_KEY_CHARS = 255


class BadRequestError(Exception):
    pass


@dataclass
class Sim:
    config: SimConfig
    engine: Engine
    faults: Faults
    sender: WebhookSender
    plans: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Dialect:
    """How one provider words errors and events."""

    provider: str
    error: Callable[[int, str, str], Response]  # (status, code, message)
    events: Callable[[Operation], list[dict[str, Any]]]
    render: Callable[[Operation], Response]


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequestError("body too large")
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise BadRequestError("body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequestError("body must be an object")
    return body


def authorized(sim: Sim, provider: str, presented: str | None) -> bool:
    return presented == sim.config.api_keys[provider]


async def run(
    sim: Sim,
    dialect: Dialect,
    *,
    operation: str,
    key: str | None,
    process: Callable[[], Operation],
    behaviour: str | None = None,
) -> Response:
    provider = dialect.provider
    draw = sim.faults.draw(provider, operation)
    if draw.latency_s:
        await asyncio.sleep(draw.latency_s)
    if draw.error:  # a gateway failure comes before any validation
        return dialect.error(503, "temporarily_unavailable", "injected fault")
    if not key or len(key) > MAX_KEY_CHARS:
        return dialect.error(400, "idempotency_key_required", "send an idempotency key")
    if draw.timeout or behaviour == "timeout":
        await asyncio.sleep(sim.config.hold_s)
        return dialect.error(504, "timeout", "the provider timed out")
    existed = sim.engine.find(provider, key) is not None
    try:
        result = process()
    except KeyReusedError:
        return dialect.error(422, "idempotency_key_reused", "key used for another request")
    if not existed and result.outcome != "failed":
        for number, event in enumerate(dialect.events(result)):
            sim.sender.emit(
                provider,
                event,
                duplicates=draw.webhook_duplicates,
                # A later event of the same operation goes a little later, so in-order
                # delivery is the default and only the fault reorders.
                delay_s=draw.webhook_delay_s + number * 0.05,
            )
    if draw.lost_response or behaviour == "lost_response":
        await asyncio.sleep(sim.config.hold_s)
        return dialect.error(504, "response_lost", "the response was lost")
    return dialect.render(result)


async def read_fault(sim: Sim, provider: str, operation: str) -> int | None:
    """Faults for a read (lookup, settlement, tokenize): the HTTP status to fail with."""
    draw = sim.faults.draw(provider, operation)
    if draw.latency_s:
        await asyncio.sleep(draw.latency_s)
    if draw.error:
        return 503
    if draw.timeout or draw.lost_response:
        await asyncio.sleep(sim.config.hold_s)
        return 504
    return None


def problem(status: int, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=status)
