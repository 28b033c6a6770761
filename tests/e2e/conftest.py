"""Fixtures shared by the payments e2e modules: one API process of our own for the session."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from app.entrypoints.devstack import Stack
from tests.support.api_client import ClientFactory
from tests.support.payments import ApiProcess, Merchant, Simulator, api_process, new_merchant


@pytest.fixture(scope="session")
def payments_api(stack: Stack) -> Iterator[ApiProcess]:
    with api_process(stack, "payments-api") as process:
        Simulator(stack).webhooks(target=process.url)
        yield process


@pytest.fixture(scope="session")
def payments_http(payments_api: ApiProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=payments_api.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def merchant(client_factory: ClientFactory, payments_http: httpx.Client) -> Merchant:
    return new_merchant(client_factory, payments_http)


@pytest.fixture(scope="session")
def simulator(stack: Stack) -> Simulator:
    return Simulator(stack)
