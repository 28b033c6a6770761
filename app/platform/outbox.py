"""The transactional outbox: events are written in the same transaction as their effect."""

from __future__ import annotations

import dataclasses
import json
import secrets
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


class IntegrationEvent(Protocol):
    """What every domain's `events.py` dataclass provides."""

    EVENT_TYPE: str
    EVENT_VERSION: int

    @property
    def aggregate_id(self) -> str: ...


_INSERT = text(
    """
    INSERT INTO platform.outbox (event_id, event_type, event_version, aggregate_id, payload)
    VALUES (:event_id, :event_type, :event_version, :aggregate_id, CAST(:payload AS jsonb))
    """
)


async def emit(session: AsyncSession, event: Any) -> str:
    """Append `event` (a frozen dataclass from some `events.py`) to the outbox; return its id."""
    event_id = "evt_" + secrets.token_hex(12)
    payload: dict[str, Any] = dataclasses.asdict(event)
    await session.execute(
        _INSERT,
        {
            "event_id": event_id,
            "event_type": event.EVENT_TYPE,
            "event_version": event.EVENT_VERSION,
            "aggregate_id": event.aggregate_id,
            "payload": json.dumps(payload, default=str),
        },
    )
    return event_id


_BACKLOG = text(
    """
    SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(occurred_at)), 0)::float8
    FROM platform.outbox WHERE published_at IS NULL
    """
)


async def sample_backlog(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Set the outbox depth and oldest-age gauges (the partial index keeps this cheap)."""
    from app.platform.metrics import set_outbox

    async with sessions() as session:
        depth, oldest_age_s = (await session.execute(_BACKLOG)).one()
    set_outbox(int(depth), float(oldest_age_s))
