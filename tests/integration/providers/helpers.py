"""Helpers for tests against the real provider simulator process (started by `stack`)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx

from app.entrypoints.devstack import Stack
from app.entrypoints.launchers.openbao import DEV_ROOT_TOKEN
from app.platform.settings import VaultLogin
from app.platform.vault import Vault
from app.providers.api import (
    ProviderClients,
    ProviderName,
    ProviderResult,
    ProviderSecrets,
    ProviderSettings,
    read_provider_secrets,
)

T = TypeVar("T")

# Short limits so the failure paths run in seconds; the simulator holds a timeout or a
# lost response for 5 s (the fixture's sim_hold_s), longer than any timeout here.
FAST = {
    "PROVIDER_AUTHORIZE_TIMEOUT_MS": "700",
    "PROVIDER_CAPTURE_TIMEOUT_MS": "700",
    "PROVIDER_VOID_TIMEOUT_MS": "700",
    "PROVIDER_REFUND_TIMEOUT_MS": "700",
    "PROVIDER_PAYOUT_TIMEOUT_MS": "700",
    "PROVIDER_LOOKUP_TIMEOUT_MS": "700",
    "PROVIDER_RETRY_ATTEMPTS": "3",
    "PROVIDER_RETRY_BASE_MS": "20",
    "PROVIDER_RETRY_CAP_MS": "100",
    "PROVIDER_BREAKER_THRESHOLD": "5",
    "PROVIDER_BREAKER_RESET_MS": "600",
}


def key(prefix: str = "k") -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def provider_secrets(stack: Stack) -> dict[ProviderName, ProviderSecrets]:
    """Each provider's API key and webhook secret, as the dev stack wrote them to Vault."""
    return dict(
        read_provider_secrets(Vault.login(stack.vault_addr, VaultLogin(token=DEV_ROOT_TOKEN)))
    )


def clients(stack: Stack, **overrides: str) -> ProviderClients:
    settings = ProviderSettings.from_env({**stack.app_env(), **FAST, **overrides})
    return ProviderClients(settings, provider_secrets(stack))


# The operations the tests repeat, in EUR and with a fresh idempotency key unless given.


async def authorize(
    providers: ProviderClients,
    provider: str,
    amount_minor: int,
    *,
    card_token: str = "tok_visa",
    capture: bool = False,
    idempotency_key: str | None = None,
) -> ProviderResult:
    return await providers.authorize(
        provider,
        card_token=card_token,
        amount_minor=amount_minor,
        currency="EUR",
        idempotency_key=idempotency_key or key(),
        capture=capture,
    )


async def capture(
    providers: ProviderClients,
    provider: str,
    reference: str,
    amount_minor: int,
    *,
    idempotency_key: str | None = None,
) -> ProviderResult:
    return await _on_charge(providers.capture, provider, reference, amount_minor, idempotency_key)


async def refund(
    providers: ProviderClients,
    provider: str,
    reference: str,
    amount_minor: int,
    *,
    idempotency_key: str | None = None,
) -> ProviderResult:
    return await _on_charge(providers.refund, provider, reference, amount_minor, idempotency_key)


async def _on_charge(
    operation: Callable[..., Awaitable[ProviderResult]],
    provider: str,
    reference: str,
    amount_minor: int,
    idempotency_key: str | None,
) -> ProviderResult:
    return await operation(
        provider,
        provider_reference=reference,
        amount_minor=amount_minor,
        currency="EUR",
        idempotency_key=idempotency_key or key(),
    )


def run(make: Callable[[ProviderClients], Awaitable[T]], stack: Stack, **overrides: str) -> T:
    """Run one coroutine with fresh clients (own breaker state), closing them after."""

    async def main() -> T:
        providers = clients(stack, **overrides)
        try:
            return await make(providers)
        finally:
            await providers.aclose()

    return asyncio.run(main())


def sim(stack: Stack, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(method, f"{stack.sim_url}{path}", json=body, timeout=10)
    response.raise_for_status()
    return response.json()


def requests_seen(stack: Stack, provider: str, operation: str) -> int:
    stats = sim(stack, "GET", "/_sim/stats")
    return int(stats[provider]["requests"].get(operation, 0))


def charges(stack: Stack, provider: str) -> int:
    return int(sim(stack, "GET", "/_sim/stats")[provider]["charges"])


@contextmanager
def fault(stack: Stack, provider: str, operation: str, **settings: Any) -> Iterator[None]:
    sim(stack, "PUT", f"/_sim/faults/{provider}/{operation}", settings)
    try:
        yield
    finally:
        sim(stack, "DELETE", f"/_sim/faults/{provider}/{operation}")
