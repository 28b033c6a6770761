"""Routing rules from settings, end to end: a 10 % pilot split and a currency rule."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from app.entrypoints.devstack import Stack
from tests.support.api_client import ClientFactory
from tests.support.payments import api_process, new_merchant

PAYMENTS = 200


def test_ten_percent_split_sends_about_a_tenth_to_the_pilot_provider_when_200_payments_run(
    stack: Stack, client_factory: ClientFactory
) -> None:
    env = {"PAYMENTS_SPLIT": "globex:10", "PAYMENTS_CURRENCY_ROUTES": "EUR=globex"}
    with (
        api_process(stack, "payments-api-split", env) as api,
        httpx.Client(base_url=api.url, timeout=60) as http,
    ):
        owner = new_merchant(client_factory, http)

        def pay(n: int) -> dict[str, Any]:
            response = owner.pay(100 + n, provider="auto", capture="manual")
            if response.status_code != 201:
                raise AssertionError(response.text)
            body: dict[str, Any] = response.json()
            return body

        with ThreadPoolExecutor(max_workers=4) as pool:
            payments = list(pool.map(pay, range(PAYMENTS)))
        euro = owner.pay(500, currency="EUR", provider="auto", capture="manual").json()
    providers = Counter(payment["provider"] for payment in payments)
    rules = Counter(payment["route_rule"] for payment in payments)
    # Binomial(200, 0.1): mean 20, sd 4.2; the bounds are about 3 sd wide.
    assert 8 <= providers["globex"] <= 34, providers
    assert providers["globex"] + providers["acme"] == PAYMENTS
    assert rules["split:10%"] == providers["globex"]
    assert rules["default"] == providers["acme"]
    assert all(payment["status"] == "authorized" for payment in payments)
    route_steps = [step for step in payments[0]["steps"] if step["name"] == "route"]
    assert route_steps[0]["detail"]["rule"] == payments[0]["route_rule"]
    assert (euro["provider"], euro["route_rule"]) == ("globex", "currency:EUR")
