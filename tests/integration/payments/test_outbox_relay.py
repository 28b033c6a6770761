"""The outbox relay against the real PostgreSQL: per-aggregate order under SKIP LOCKED, and
fan-out of a committed payment event to the owner's subscribed endpoints."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy import text

from app.entrypoints.devstack import Stack
from app.platform import outbox
from app.platform.db import create_engine, session_factory


@dataclass(frozen=True, slots=True)
class _Happened:
    EVENT_TYPE: ClassVar[str] = "payment.captured"
    EVENT_VERSION: ClassVar[int] = 1
    payment_id: str
    owner: str
    n: int

    @property
    def aggregate_id(self) -> str:
        return self.payment_id


def test_claims_only_the_oldest_unpublished_event_per_aggregate_when_two_relays_run(
    stack: Stack,
) -> None:
    async def scenario() -> tuple[list[Any], list[Any], list[Any]]:
        engine = create_engine(str(stack.database_url), pool_size=3)
        sessions = session_factory(engine)
        first_aggregate, second_aggregate = (
            "pay_" + secrets.token_hex(6),
            "pay_" + secrets.token_hex(6),
        )
        try:
            async with sessions() as session, session.begin():
                await session.execute(text("UPDATE platform.outbox SET published_at = now()"))
                for n in range(3):
                    await outbox.emit(session, _Happened(first_aggregate, "cli_x", n))
                await outbox.emit(session, _Happened(second_aggregate, "cli_x", 0))
            async with sessions() as one, one.begin():
                held = await outbox.claim_heads(one, 10)
                async with sessions() as two, two.begin():
                    # While relay one holds both heads, relay two gets nothing: the next
                    # event of an aggregate is not its head until the head is published.
                    meanwhile = await outbox.claim_heads(two, 10)
                await outbox.mark_published(one, [event.id for event in held])
            async with sessions() as three, three.begin():
                after = await outbox.claim_heads(three, 10)
            return held, meanwhile, after
        finally:
            await engine.dispose()

    held, meanwhile, after = asyncio.run(scenario())
    assert sorted((e.payload["n"], len(e.aggregate_id)) for e in held) == [(0, 16), (0, 16)]
    assert meanwhile == []
    assert [event.payload["n"] for event in after] == [1]
    assert json.dumps(after[0].payload)


@asynccontextmanager
async def _payments_runtime(stack: Stack) -> AsyncIterator[tuple[Any, Any]]:
    """The payments runtime the worker's relay runs with (database, Vault, providers)."""
    from app.payments import api as payments_api
    from app.platform.settings import VaultLogin
    from app.platform.vault import Vault
    from app.providers import api as providers_api

    engine = create_engine(str(stack.database_url), pool_size=3)
    sessions = session_factory(engine)
    vault = Vault.login(stack.vault_addr, VaultLogin(token="moneypath-dev-root"))
    providers = providers_api.ProviderClients(
        providers_api.ProviderSettings.from_env(stack.app_env()),
        providers_api.read_provider_secrets(vault),
    )
    try:
        yield sessions, payments_api.start_payments(sessions, providers, vault=vault)
    finally:
        await providers.aclose()
        await engine.dispose()


def test_relay_fans_a_payment_event_out_to_subscribed_endpoints_of_its_owner_only(
    stack: Stack,
) -> None:
    from app.payments.relay import relay_once

    async def scenario() -> list[Any]:
        owner, other = "cli_" + secrets.token_hex(6), "cli_" + secrets.token_hex(6)
        payment_id = "pay_" + secrets.token_hex(6)
        async with _payments_runtime(stack) as (sessions, runtime):
            async with sessions() as session, session.begin():
                await session.execute(text("UPDATE platform.outbox SET published_at = now()"))
                for endpoint_id, who, types in (
                    ("we_all_" + owner, owner, ["*"]),
                    ("we_auth_" + owner, owner, ["payment.authorized"]),
                    ("we_other_" + owner, other, ["*"]),
                ):
                    await session.execute(
                        text(
                            "INSERT INTO payments.webhook_endpoints (id, owner, url, event_types)"
                            " VALUES (:id, :owner, 'http://127.0.0.1:9/x', :types)"
                        ),
                        {"id": endpoint_id, "owner": who, "types": types},
                    )
                await outbox.emit(session, _Happened(payment_id, owner, 7))
            await relay_once(runtime)
            async with sessions() as session:
                rows = await session.execute(
                    text(
                        "SELECT endpoint_id, event_type, body FROM payments.deliveries"
                        " WHERE body LIKE :like"
                    ),
                    {"like": f"%{payment_id}%"},
                )
                return list(rows)

    rows = asyncio.run(scenario())
    assert [row.endpoint_id.split("_")[1] for row in rows] == ["all"]
    body = json.loads(rows[0].body)
    assert body["type"] == "payment.captured"
    assert body["data"] == {"payment_id": body["data"]["payment_id"], "n": 7}
    assert body["id"].startswith("evt_")


def test_relay_behind_does_not_send_an_older_event_to_an_endpoint_registered_after_it(
    stack: Stack,
) -> None:
    from app.payments.relay import relay_once

    async def scenario() -> tuple[str, list[str]]:
        owner = "cli_" + secrets.token_hex(6)
        older, newer = "pay_" + secrets.token_hex(6), "pay_" + secrets.token_hex(6)
        async with _payments_runtime(stack) as (sessions, runtime):
            async with sessions() as session, session.begin():
                await session.execute(text("UPDATE platform.outbox SET published_at = now()"))
                await outbox.emit(session, _Happened(older, owner, 1))
            # The endpoint is registered while the relay has not yet published the event.
            async with sessions() as session, session.begin():
                await session.execute(
                    text(
                        "INSERT INTO payments.webhook_endpoints (id, owner, url, event_types)"
                        " VALUES (:id, :owner, 'http://127.0.0.1:9/x', ARRAY['*'])"
                    ),
                    {"id": "we_late_" + owner, "owner": owner},
                )
            async with sessions() as session, session.begin():
                await outbox.emit(session, _Happened(newer, owner, 2))
            await relay_once(runtime)
            async with sessions() as session:
                rows = await session.execute(
                    text("SELECT body FROM payments.deliveries WHERE endpoint_id = :id"),
                    {"id": "we_late_" + owner},
                )
                return newer, [json.loads(row.body)["data"]["payment_id"] for row in rows]

    newer, delivered = asyncio.run(scenario())
    assert delivered == [newer]
