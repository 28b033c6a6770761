"""Shared set-up for the risk tests: real customers through the API, and direct calls to
`app.risk.api` inside a real transaction, against the stack's PostgreSQL and OPA."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from sqlalchemy.ext.asyncio import AsyncSession

from app.entrypoints.devstack import Stack
from app.platform.db import create_engine, session_factory
from app.platform.opa import Opa
from app.risk import api as risk_api
from tests.support.api_client import ApiClient

T = TypeVar("T")
DEFAULT_TIMEOUT_MS = 2000


def key() -> str:
    return "idem-" + secrets.token_hex(12)


def sql(stack: Stack, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        cursor = connection.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def customer(
    kyc: ApiClient,
    stack: Stack,
    *,
    country: str = "DE",
    verified: bool = True,
    date_of_birth: str | None = "1990-01-01",
    age_days: int = 400,
) -> str:
    """A real customer (PII through Vault), verified if asked, created `age_days` ago."""
    body: dict[str, Any] = {"name": "Risk Test", "email": "risk@example.org", "country": country}
    if date_of_birth is not None:
        body["date_of_birth"] = date_of_birth
    response = kyc.post("/v1/customers", json=body, idempotency_key=key())
    assert response.status_code == 201, response.text
    customer_id: str = response.json()["id"]
    if verified:
        decided = kyc.post(
            f"/v1/customers/{customer_id}/kyc", json={"status": "verified"}, idempotency_key=key()
        )
        assert decided.status_code == 200, decided.text
    sql(
        stack,
        "UPDATE identity.customers SET created_at = now() - make_interval(days => %s)"
        " WHERE id = %s",
        age_days,
        customer_id,
    )
    return customer_id


def payment_input(customer_id: str, amount_minor: int = 1000, currency: str = "EUR") -> Any:
    return risk_api.RiskInput(
        payment_id="pay_" + secrets.token_hex(12),
        client_id="cli_risktest",
        customer_id=customer_id,
        amount_minor=amount_minor,
        currency=currency,
        request_id="req_" + secrets.token_hex(6),
    )


def in_transaction(stack: Stack, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one committed transaction on a fresh engine (and event loop)."""
    assert stack.database_url is not None
    url = stack.database_url

    async def scenario() -> T:
        engine = create_engine(url, pool_size=2)
        try:
            async with session_factory(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(scenario())


def assess(
    stack: Stack,
    risk_input: Any,
    *,
    opa_url: str | None = None,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
) -> risk_api.RiskDecision:
    async def work(session: AsyncSession) -> risk_api.RiskDecision:
        opa = Opa(opa_url or stack.opa_url, timeout_ms=10_000)
        try:
            return await risk_api.assess_payment(session, opa, risk_input, timeout_ms=timeout_ms)
        finally:
            await opa.close()

    return in_transaction(stack, work)
