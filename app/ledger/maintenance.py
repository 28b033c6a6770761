"""The worker's ledger steps: expire overdue holds, create the postings partitions ahead.

Both are bounded per call and safe from several processes at once (SKIP LOCKED,
idempotent DDL).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ledger import domain, transactions
from app.platform.db import ensure_month_partitions, run_in_transaction

# Holds expired per worker cycle: the one limit, used by the api default and the worker.
MAX_HOLDS_PER_CYCLE = 500
POSTINGS_MONTHS_AHEAD = 3


async def expire_holds(sessions: async_sessionmaker[AsyncSession], *, max_holds: int) -> int:
    """Expire up to `max_holds` overdue holds, one short transaction each.

    The queue is read oldest first; whether a hold is due is `domain.hold_expired`'s call,
    so the rule lives there and not in this query.
    """
    expired = 0
    for _ in range(max_holds):

        async def one(session: AsyncSession) -> bool:
            oldest = (
                await session.execute(
                    text(
                        """
                        SELECT transaction_id, expires_at FROM ledger.open_holds
                        ORDER BY expires_at
                        LIMIT 1
                        FOR UPDATE SKIP LOCKED
                        """
                    )
                )
            ).first()
            if oldest is None or not domain.hold_expired(oldest.expires_at, datetime.now(UTC)):
                return False
            await transactions.expire_transaction(session, oldest.transaction_id)
            return True

        if not await run_in_transaction(sessions, one):
            break
        expired += 1
    return expired


async def ensure_partitions(session: AsyncSession, months_ahead: int) -> int:
    return await ensure_month_partitions(session, "ledger.postings", months_ahead)
