"""The money path's backlogs, read from the database when `/metrics` is scraped.

Outbox depth and oldest age, and dead letters waiting: state in the database, so every
process that serves `/metrics` (each API process, each worker) reports the same figure,
fresh at scrape time, whichever process made the backlog. Alert rules take `max()`.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.payments import api as payments_api
from app.platform import outbox


async def sample(sessions: async_sessionmaker[AsyncSession]) -> None:
    await outbox.sample_backlog(sessions)
    await payments_api.sample_dead_letters(sessions)
