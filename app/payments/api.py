"""The payments domain's public door: start-up, endpoints and the worker's steps.

The composition root builds one `Runtime` with `start_payments` and stores it in
a `payments` field of its services; the worker calls `run_worker_cycle`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, NamedTuple

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.routing import Route

from app.payments import (
    dead_letters,
    recovery,
    relay,
    routes,
    webhook_delivery,
    webhooks_in,
)
from app.payments.config import PaymentsConfig
from app.payments.recovery import RecoveryReport
from app.payments.saga import Runtime
from app.platform.errors import ValidationError
from app.platform.opa import Opa
from app.platform.vault import Vault
from app.platform.web import Endpoint
from app.providers.api import ProviderClients

MAX_RELAY_PASSES_PER_CYCLE = 10
MAX_SETTLED_DAYS = 32

__all__ = [
    "SETTLED_TABLE",
    "PaymentsConfig",
    "PaymentsCycle",
    "RecoveryReport",
    "Runtime",
    "SettledMoney",
    "earliest_settled_by_day",
    "endpoints",
    "list_dead_letters",
    "list_settled",
    "openapi_paths",
    "plain_routes",
    "recover",
    "replay_dead_letter",
    "run_worker_cycle",
    "sample_dead_letters",
    "stage_settled",
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
    delivered = await webhook_delivery.deliver_due(runtime, http)
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
        return await dead_letters.dead_letters(session)


async def sample_dead_letters(sessions: async_sessionmaker[AsyncSession]) -> int:
    """Set `moneypath_webhook_dead_letters_waiting` from the database (at scrape time)."""
    return await dead_letters.sample(sessions)


async def replay_dead_letter(sessions: async_sessionmaker[AsyncSession], delivery_id: int) -> bool:
    async with sessions() as session, session.begin():
        return await dead_letters.replay(session, delivery_id)


class SettledMoney(NamedTuple):
    """Money we moved through a provider and booked: what its settlement file should list.

    A named tuple, not a dataclass: a day at a busy provider lists a million of them,
    and a tuple is built several times faster.

    `provider_reference` is the id the provider's file names it by: the charge id for
    captures and refunds (a refund line names the charge it refunds), the payout id for
    payouts. `settled_on` is the UTC day our side finished it.
    """

    kind: Literal["capture", "refund", "payout"]
    provider_reference: str
    amount_minor: int
    currency: str
    settled_on: date
    ledger_transaction_id: str | None
    subject_id: str  # our payment, refund or payout id
    settled_at: datetime | None = None  # when our side finished it (aware UTC)


# Captures come from their saga steps (a payment may be captured in parts), refunds and
# payouts from their own rows; all three only once the provider confirmed them.
_SETTLED_SQL = text(
    """
    SELECT 'capture' AS kind, p.provider_ref AS reference, s.amount_minor, p.currency,
           s.finished_at AS at, p.hold_transaction_id AS txn, p.id AS subject_id
      FROM payments.steps s JOIN payments.payments p ON p.id = s.saga_id
     WHERE s.name = 'capture' AND s.status = 'succeeded' AND p.provider = :provider
       AND p.provider_ref IS NOT NULL AND s.amount_minor IS NOT NULL
       AND s.finished_at >= :since AND s.finished_at < :until
    UNION ALL
    SELECT 'refund', p.provider_ref, r.amount_minor, p.currency, r.updated_at,
           r.ledger_transaction_id, r.id
      FROM payments.refunds r JOIN payments.payments p ON p.id = r.payment_id
     WHERE r.status = 'succeeded' AND p.provider = :provider AND p.provider_ref IS NOT NULL
       AND r.updated_at >= :since AND r.updated_at < :until
    UNION ALL
    SELECT 'payout', o.provider_ref, o.amount_minor, o.currency, o.updated_at,
           o.ledger_transaction_ids[1], o.id
      FROM payments.payouts o
     WHERE o.status = 'paid' AND o.provider = :provider AND o.provider_ref IS NOT NULL
       AND o.updated_at >= :since AND o.updated_at < :until
    """
)


async def list_settled(
    session: AsyncSession, provider: str, first_day: date, last_day: date
) -> list[SettledMoney]:
    """Captures, refunds and payouts at `provider` settled on our side from `first_day`
    to `last_day` (UTC days, both included; at most MAX_SETTLED_DAYS days)."""
    days = (last_day - first_day).days + 1
    if not 1 <= days <= MAX_SETTLED_DAYS:
        raise ValidationError(f"a settled listing spans 1 to {MAX_SETTLED_DAYS} days")
    since = datetime.combine(first_day, time.min, tzinfo=UTC)
    rows = await session.execute(
        _SETTLED_SQL,
        {"provider": provider, "since": since, "until": since + timedelta(days=days)},
    )
    settled: list[SettledMoney] = []
    for kind, reference, amount, currency, at, txn, subject_id in rows:
        moment = at.astimezone(UTC)
        settled.append(
            SettledMoney(
                kind, reference, int(amount), currency, moment.date(), txn, subject_id, moment
            )
        )
    return settled


async def earliest_settled_by_day(
    session: AsyncSession, provider: str, since: datetime, until: datetime
) -> dict[date, datetime]:
    """For each UTC day on which money settled at `provider` in [since, until) (at most
    MAX_SETTLED_DAYS days), the earliest moment it did: list_settled, summarised."""
    if not timedelta(0) < until - since <= timedelta(days=MAX_SETTLED_DAYS):
        raise ValidationError(f"a settled listing spans 1 to {MAX_SETTLED_DAYS} days")
    rows = await session.execute(
        text(
            "SELECT (at AT TIME ZONE 'UTC')::date AS day, min(at) AS first_at"  # noqa: S608
            f" FROM ({_SETTLED_SQL.text}) AS settled GROUP BY 1"
        ),
        {"provider": provider, "since": since, "until": until},
    )
    return {row.day: row.first_at.astimezone(UTC) for row in rows}


SETTLED_TABLE = "settled_money"


async def stage_settled(
    session: AsyncSession, provider: str, first_day: date, last_day: date
) -> None:
    """What list_settled lists, left in the temporary table `settled_money` (kind,
    reference, amount_minor, currency, at, subject_id), dropped at the end of the
    transaction: for a caller that joins a million of them in SQL instead of loading them."""
    days = (last_day - first_day).days + 1
    if not 1 <= days <= MAX_SETTLED_DAYS:
        raise ValidationError(f"a settled listing spans 1 to {MAX_SETTLED_DAYS} days")
    since = datetime.combine(first_day, time.min, tzinfo=UTC)
    await session.execute(text(f"DROP TABLE IF EXISTS pg_temp.{SETTLED_TABLE}"))
    await session.execute(
        text(
            f"CREATE TEMPORARY TABLE {SETTLED_TABLE} ON COMMIT DROP AS"  # noqa: S608 - fixed
            " SELECT kind, reference, amount_minor::bigint AS amount_minor, currency, at,"
            f" subject_id FROM ({_SETTLED_SQL.text}) AS settled"
        ),
        {"provider": provider, "since": since, "until": since + timedelta(days=days)},
    )
    # Temporary tables get no autovacuum: without statistics the planner guesses badly.
    # The matching joins and groups by (kind, reference) only, so only those get them:
    # statistics of all six columns cost about 0.09 s of a million-line run.
    await session.execute(text(f"ANALYZE {SETTLED_TABLE} (kind, reference)"))
