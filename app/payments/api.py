"""The payments domain's public door: start-up, endpoints and the worker's steps.

The composition root builds one `Runtime` with `start_payments` and stores it in
`Services.extras["payments"]`; the worker calls `run_worker_cycle`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.routing import Route

from app.payments import recovery, routes, webhooks_in
from app.payments.config import PaymentsConfig
from app.payments.recovery import RecoveryReport
from app.payments.saga import Runtime
from app.platform.web import Endpoint
from app.providers.api import ProviderClients

__all__ = [
    "PaymentsConfig",
    "RecoveryReport",
    "Runtime",
    "endpoints",
    "openapi_paths",
    "plain_routes",
    "recover",
    "start_payments",
]


def start_payments(
    sessions: async_sessionmaker[AsyncSession],
    providers: ProviderClients,
    config: PaymentsConfig | None = None,
) -> Runtime:
    return Runtime(sessions=sessions, providers=providers, config=config or PaymentsConfig.from_env())


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
