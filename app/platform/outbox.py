"""The transactional outbox: events are written in the same transaction as their effect."""

from __future__ import annotations

import dataclasses
import json
import secrets
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


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
