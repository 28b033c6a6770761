"""The payments domain's public door: start-up, endpoints and the worker's steps.

The composition root builds one `Runtime` with `start_payments` and stores it in
a `payments` field of its services; the worker calls `run_worker_cycle`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.routing import Route

from app.payments import recovery, relay, routes, webhooks_in, webhooks_out
from app.payments.config import PaymentsConfig
from app.payments.recovery import RecoveryReport
from app.payments.saga import Runtime
from app.platform.opa import Opa
from app.platform.vault import Vault
from app.platform.web import Endpoint
from app.providers.api import ProviderClients

MAX_RELAY_PASSES_PER_CYCLE = 10

__all__ = [
    "PaymentsConfig",
    "PaymentsCycle",
    "RecoveryReport",
    "Runtime",
    "endpoints",
    "list_dead_letters",
    "openapi_paths",
    "plain_routes",
    "recover",
    "replay_dead_letter",
    "run_worker_cycle",
    "start_payments",
    "webhook_http_client",
]


def start_payments(
    sessions: async_sessionmaker[AsyncSession],
    providers: ProviderClients,
    config: PaymentsConfig | None = None,
    vault: Vault | None = None,
    opa: Opa | None = None,
    *,
    risk_timeout_ms: int = 250,
) -> Runtime:
    return Runtime(
        sessions=sessions,
        providers=providers,
        config=config or PaymentsConfig.from_env(),
        vault=vault,
        opa=opa,
        risk_timeout_ms=risk_timeout_ms,
    )


def endpoints() -> list[Endpoint]:
    """Every payments `/v1` endpoint that goes through the platform pipeline."""
    return routes.endpoints()


def plain_routes() -> list[Route]:
    """Routes with their own auth scheme: inbound provider webhooks (provider signature)."""
    return webhooks_in.routes()


def openapi_paths() -> dict[str, Any]:
    return webhooks_in.openapi_paths()


async def recover(runtime: Runtime) -> RecoveryReport:
    """Worker step: finish sagas left in a step (asks the provider before re-sending)."""
    return await recovery.recover(runtime)


@dataclass(frozen=True, slots=True)
class PaymentsCycle:
    events_relayed: int
    deliveries_attempted: int
    steps_recovered: int
    steps_still_open: int
    payments_resumed: int


async def run_worker_cycle(runtime: Runtime, http: httpx.AsyncClient) -> PaymentsCycle:
    """One bounded pass of the payments worker: relay the outbox, deliver due merchant
    webhooks, and finish sagas left in a step."""
    # Each pass takes one event per aggregate, so a payment's later events need more
    # passes; a few per cycle drain a burst without letting one cycle run unbounded.
    relayed_events = 0
    for _ in range(MAX_RELAY_PASSES_PER_CYCLE):
        passed = await relay.relay_once(runtime)
        relayed_events += passed.events
        if passed.events == 0:
            break
    delivered = await webhooks_out.deliver_due(runtime, http)
    recovered = await recovery.recover(runtime)
    return PaymentsCycle(
        events_relayed=relayed_events,
        deliveries_attempted=delivered,
        steps_recovered=recovered.steps_settled,
        steps_still_open=recovered.steps_left,
        payments_resumed=recovered.payments_resumed,
    )


def webhook_http_client() -> httpx.AsyncClient:
    """The client merchant deliveries use: no redirects, no proxies from the environment."""
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=10),
    )


async def list_dead_letters(sessions: async_sessionmaker[AsyncSession]) -> list[dict[str, Any]]:
    async with sessions() as session:
        return await webhooks_out.dead_letters(session)


async def replay_dead_letter(sessions: async_sessionmaker[AsyncSession], delivery_id: int) -> bool:
    async with sessions() as session, session.begin():
        return await webhooks_out.replay(session, delivery_id)
