"""Which provider takes a payment: a pure rule over the settings and the breakers' state.

The rule runs once, before the first provider call, and its answer (provider and the rule
that chose it) is recorded as the saga's `route` step. Every later call of that payment
(retries, recovery, capture, refunds) goes to the recorded provider, so a payment can
never have attempts at two providers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from app.payments.config import PROVIDERS, Routing
from app.platform.errors import DependencyUnavailableError


class NoProviderAvailableError(DependencyUnavailableError):
    code = "provider_unavailable"
    title = "Payment provider unavailable"


@dataclass(frozen=True, slots=True)
class RouteChoice:
    provider: str
    rule: str
    fallback_from: str | None = None


def split_bucket(payment_id: str) -> int:
    """A stable 0..99 bucket per payment, so a split is reproducible and auditable."""
    digest = hashlib.sha256(payment_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def primary_route(routing: Routing, currency: str, payment_id: str) -> RouteChoice:
    by_currency = routing.by_currency.get(currency)
    if by_currency is not None:
        return RouteChoice(by_currency, f"currency:{currency}")
    if routing.split_provider is not None and split_bucket(payment_id) < routing.split_percent:
        return RouteChoice(routing.split_provider, f"split:{routing.split_percent}%")
    return RouteChoice(routing.default_provider, "default")


def choose_route(
    routing: Routing,
    currency: str,
    payment_id: str,
    breaker_open: Callable[[str], bool],
    requested: str | None = None,
) -> RouteChoice:
    """The provider for a new payment. Falls back only when the first choice's breaker is
    open now, before anything was sent; raises NoProviderAvailableError when none is usable.

    A provider the client named pins the payment there (its token came from that
    provider's hosted fields), so it never falls back.
    """
    if requested is not None and requested != "auto":
        choice = RouteChoice(requested, "requested")
    else:
        choice = primary_route(routing, currency, payment_id)
    if not breaker_open(choice.provider):
        return choice
    if routing.fallback and choice.rule != "requested":
        for other in PROVIDERS:
            if other != choice.provider and not breaker_open(other):
                return RouteChoice(
                    other, f"{choice.rule}+fallback:breaker_open", fallback_from=choice.provider
                )
    raise NoProviderAvailableError(
        f"provider {choice.provider} is unavailable (circuit open) and no fallback is usable"
    )
