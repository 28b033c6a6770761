"""Merchant webhook dead letters: deliveries given up after the last attempt, listed and
replayed by the CLI, and counted for /metrics."""

from __future__ import annotations

from typing import Any

from prometheus_client import Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.payments import store

# The counter in webhook_delivery counts dead-letterings in the process that made them;
# this gauge is the state in the database (dead and not replayed), the same from any
# process that samples it, so it survives restarts and needs no particular scrape target.
WAITING = Gauge(
    "moneypath_webhook_dead_letters_waiting",
    "Merchant webhook deliveries dead-lettered and not replayed yet (sampled from the database).",
)


async def dead_letters(session: AsyncSession, limit: int = 100) -> list[dict[str, Any]]:
    rows = await session.execute(
        text(
            "SELECT id, endpoint_id, event_id, event_type, attempts, last_status_code, last_error,"
            " updated_at FROM payments.deliveries WHERE status = 'dead' ORDER BY id LIMIT :limit"
        ),
        {"limit": limit},
    )
    return [{**dict(row._mapping), "updated_at": store.iso(row.updated_at)} for row in rows]


async def replay(session: AsyncSession, delivery_id: int) -> bool:
    """Send a dead letter again: a fresh set of attempts, same event id and body."""
    done = await session.execute(
        text(
            "UPDATE payments.deliveries SET status = 'pending', attempts = 0,"
            " next_attempt_at = now(), updated_at = now() WHERE id = :id AND status = 'dead'"
            " RETURNING id"
        ),
        {"id": delivery_id},
    )
    return done.first() is not None


async def sample(sessions: async_sessionmaker[AsyncSession]) -> int:
    """Set the waiting dead letters gauge from the database; returns the count."""
    async with sessions() as session:
        count = int(
            (
                await session.execute(
                    text("SELECT count(*) FROM payments.deliveries WHERE status = 'dead'")
                )
            ).scalar_one()
        )
    WAITING.set(count)
    return count
