"""The transactional outbox: events are written in the same transaction as their effect."""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
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


def _row(event: Any) -> dict[str, Any]:
    """An outbox row; its payload is the event's fields, encoded where the row is written."""
    return {
        "event_id": "evt_" + secrets.token_hex(12),
        "event_type": event.EVENT_TYPE,
        "event_version": event.EVENT_VERSION,
        "aggregate_id": event.aggregate_id,
        "payload": payload(event),
    }


# Each event class's field names, read once. `dataclasses.asdict` looks them up and
# deep-copies every value on each call, which cost a transfer's event (two posting
# lines) about 14 µs of CPU (issue 16); events hold text, numbers and tuples of further
# dataclasses, which need neither.
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_ATOMS = frozenset({str, int, float, bool, type(None)})


class _UnusualValueError(Exception):
    """A value `payload` leaves to `dataclasses.asdict` (a dict, a date, a subclass...)."""


def payload(event: Any) -> dict[str, Any]:
    """`dataclasses.asdict(event)`: equal to it, for any event."""
    try:
        return _fields(event)
    except _UnusualValueError:
        return dataclasses.asdict(event)


def _fields(instance: Any) -> dict[str, Any]:
    cls = type(instance)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        if not dataclasses.is_dataclass(cls):
            raise _UnusualValueError(cls.__name__)
        names = _FIELD_NAMES[cls] = tuple(field.name for field in dataclasses.fields(cls))
    return {name: _value(getattr(instance, name)) for name in names}


def _value(value: Any) -> Any:
    kind = type(value)
    if kind in _ATOMS:
        return value  # immutable: asdict's deep copy of it is itself
    if kind is tuple or kind is list:
        return kind(_value(item) for item in value)
    return _fields(value)


def _encoded(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "payload": json.dumps(row["payload"], default=str)}


async def emit(session: AsyncSession, event: Any) -> str:
    """Append `event` (a frozen dataclass from some `events.py`) to the outbox; return its id."""
    return (await emit_many(session, [event]))[0]


_INSERT_MANY = text(
    """
    INSERT INTO platform.outbox (event_id, event_type, event_version, aggregate_id, payload)
    SELECT v.event_id, v.event_type, v.event_version, v.aggregate_id, v.payload
    FROM unnest(CAST(:event_id AS text[]), CAST(:event_type AS text[]),
                CAST(:event_version AS integer[]), CAST(:aggregate_id AS text[]),
                CAST(:payload AS jsonb[]))
         WITH ORDINALITY AS v(event_id, event_type, event_version, aggregate_id, payload, n)
    ORDER BY v.n
    """
)


# session.info key: while present, emitted rows wait there to ride along with the request's
# closing statement (see `collect`).
_COLLECTED = "moneypath.outbox.collected"


def collect(session: AsyncSession) -> None:
    """From now on, hold this transaction's events back instead of inserting each at once.

    The caller must end with `collected(session)` and write what it returns in the same
    transaction (idempotency.complete does, in the statement that completes the key), so
    an effect's events cost no round trip of their own."""
    session.info[_COLLECTED] = []


def collected(session: AsyncSession) -> list[dict[str, Any]]:
    """Stop collecting; the rows held back, in emission order. Later events insert at once."""
    rows: list[dict[str, Any]] = session.info.pop(_COLLECTED, [])
    return rows


def as_json(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as one JSON array of objects (for a `jsonb_to_recordset` insert)."""
    return json.dumps(rows, default=str, separators=(",", ":"))


async def emit_many(session: AsyncSession, events: Sequence[Any]) -> list[str]:
    """Append `events` in order, in one statement (a batch costs one round trip), or hold
    them back for the request's closing statement (`collect`)."""
    rows = [_row(event) for event in events]
    held: list[dict[str, Any]] | None = session.info.get(_COLLECTED)
    if held is not None:
        held.extend(rows)
        return [str(row["event_id"]) for row in rows]
    if len(rows) == 1:
        await session.execute(_INSERT, _encoded(rows[0]))
    elif rows:
        encoded = [_encoded(row) for row in rows]
        await session.execute(
            _INSERT_MANY, {name: [row[name] for row in encoded] for name in encoded[0]}
        )
    return [str(row["event_id"]) for row in rows]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One outbox row as a relay sees it: the payload snapshotted when its effect committed."""

    id: int
    event_id: str
    event_type: str
    event_version: int
    aggregate_id: str
    payload: dict[str, Any]
    occurred_at: datetime


# Only the oldest unpublished event of each aggregate is eligible, so one aggregate's
# events leave in commit order even with several relays: while a relay holds an
# aggregate's head event locked, the next one of that aggregate is not its head, and
# SKIP LOCKED lets the other relays move on to other aggregates instead of waiting.
_CLAIM = text(
    """
    SELECT o.id, o.event_id, o.event_type, o.event_version, o.aggregate_id, o.payload,
           o.occurred_at
    FROM platform.outbox o
    WHERE o.published_at IS NULL
      AND NOT EXISTS (
          SELECT 1 FROM platform.outbox earlier
          WHERE earlier.aggregate_id = o.aggregate_id
            AND earlier.published_at IS NULL
            AND earlier.id < o.id
      )
    ORDER BY o.id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
    """
)
_BACKLOG = text(
    """
    SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(occurred_at)), 0)::float8
    FROM platform.outbox WHERE published_at IS NULL
    """
)


async def claim_heads(session: AsyncSession, limit: int) -> list[StoredEvent]:
    """Lock up to `limit` unpublished events, at most the oldest one per aggregate."""
    rows = await session.execute(_CLAIM, {"limit": limit})
    return [
        StoredEvent(
            id=int(row.id),
            event_id=row.event_id,
            event_type=row.event_type,
            event_version=int(row.event_version),
            aggregate_id=row.aggregate_id,
            payload=dict(row.payload),
            occurred_at=row.occurred_at,
        )
        for row in rows
    ]


async def mark_published(session: AsyncSession, ids: Sequence[int]) -> None:
    if ids:
        await session.execute(
            text(
                "UPDATE platform.outbox SET published_at = now(), attempts = attempts + 1"
                " WHERE id = ANY(:ids)"
            ),
            {"ids": list(ids)},
        )


async def sample_backlog(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Set the outbox depth and oldest-age gauges (the partial index keeps this cheap)."""
    from app.platform.metrics import set_outbox

    async with sessions() as session:
        depth, oldest_age_s = (await session.execute(_BACKLOG)).one()
    set_outbox(int(depth), float(oldest_age_s))
