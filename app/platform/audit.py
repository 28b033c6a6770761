"""The append-only audit log (PCI DSS 10.2.2 fields).

Every state change and every security rejection writes one row: who (actor), what
(event type), when, success or failure, where from (IP and request id), which resource,
and the OPA decision that let it through or stopped it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.db import ensure_month_partitions

MAX_DETAILS_BYTES = 4096
MAX_TEXT_LENGTH = 256
MAX_DETAIL_DEPTH = 8
MAX_DETAIL_TEXT_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class AuditEvent:
    actor: str | None
    event_type: str
    outcome: str  # "success" | "failure"
    request_id: str | None
    origin_ip: str | None
    resource_type: str | None = None
    resource_id: str | None = None
    decision_id: str | None = None
    code: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


_INSERT = text(
    """
    INSERT INTO platform.audit_log
        (occurred_at, actor, event_type, outcome, code, origin_ip, request_id,
         resource_type, resource_id, decision_id, details)
    VALUES (now(), :actor, :event_type, :outcome, :code, :origin_ip, :request_id,
            :resource_type, :resource_id, :decision_id, CAST(:details AS jsonb))
    """
)


def _escape(code_point: int) -> str:
    return f"\\x{code_point:02x}" if code_point < 0x100 else f"\\u{code_point:04x}"


def safe_text(value: str | None, limit: int = MAX_TEXT_LENGTH) -> str | None:
    """`value` as it may be stored: control characters (NUL included, which PostgreSQL
    text refuses) written as `\\xNN` escapes, and at most `limit` characters. Audit
    rows quote what unauthenticated callers sent, so they must never fail to insert."""
    if value is None:
        return None
    if len(value) <= limit and "\\" not in value and value.isprintable():
        # Nothing to escape or cut (the usual case: ids, routes, codes); one C-level
        # check instead of the per-character pass below, which gives the same string.
        return value
    escaped = "".join(
        char if char.isprintable() and char != "\\" else _escape(ord(char))
        for char in value[: limit + 1]
    )
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"


def _safe_detail(value: Any, depth: int = 0) -> Any:
    if depth > MAX_DETAIL_DEPTH:
        return "…"
    if isinstance(value, str):
        return safe_text(value, MAX_DETAIL_TEXT_LENGTH)
    if isinstance(value, dict):
        return {safe_text(str(key)): _safe_detail(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_safe_detail(item, depth + 1) for item in value]
    return value


def params(event: AuditEvent) -> dict[str, Any]:
    """The bind parameters of one audit row (for statements that write it with more)."""
    return _params(event)


def _params(event: AuditEvent) -> dict[str, Any]:
    details = json.dumps(_safe_detail(event.details), default=str)
    if len(details) > MAX_DETAILS_BYTES:
        details = json.dumps({"truncated": True})
    return {
        "actor": safe_text(event.actor),
        "event_type": safe_text(event.event_type),
        "outcome": event.outcome,
        "code": safe_text(event.code),
        "origin_ip": safe_text(event.origin_ip),
        "request_id": safe_text(event.request_id),
        "resource_type": safe_text(event.resource_type),
        "resource_id": safe_text(event.resource_id),
        "decision_id": safe_text(event.decision_id),
        "details": details,
    }


async def record(session: AsyncSession, event: AuditEvent) -> None:
    """Write `event` in the caller's transaction, so it lands exactly when the effect does."""
    await session.execute(_INSERT, _params(event))


_INSERT_MANY = text(
    """
    INSERT INTO platform.audit_log
        (occurred_at, actor, event_type, outcome, code, origin_ip, request_id,
         resource_type, resource_id, decision_id, details)
    SELECT now(), v.actor, v.event_type, v.outcome, v.code, v.origin_ip, v.request_id,
           v.resource_type, v.resource_id, v.decision_id, v.details
    FROM unnest(CAST(:actor AS text[]), CAST(:event_type AS text[]),
                CAST(:outcome AS text[]), CAST(:code AS text[]), CAST(:origin_ip AS text[]),
                CAST(:request_id AS text[]), CAST(:resource_type AS text[]),
                CAST(:resource_id AS text[]), CAST(:decision_id AS text[]),
                CAST(:details AS jsonb[]))
         WITH ORDINALITY
         AS v(actor, event_type, outcome, code, origin_ip, request_id, resource_type,
              resource_id, decision_id, details, n)
    ORDER BY v.n
    """
)


async def record_many(session: AsyncSession, events: Sequence[AuditEvent]) -> None:
    """Write `events` in the caller's transaction, in order, in one statement: a batch
    request audits each item it writes as its own record."""
    if not events:
        return
    rows = [_params(event) for event in events]
    await session.execute(_INSERT_MANY, {name: [row[name] for row in rows] for name in rows[0]})


async def record_alone(sessions: async_sessionmaker[AsyncSession], event: AuditEvent) -> None:
    """Write `event` in its own transaction: for rejections, where nothing else commits."""
    async with sessions() as session, session.begin():
        await session.execute(_INSERT, _params(event))


async def ensure_partitions(session: AsyncSession, months_ahead: int) -> int:
    """Create the audit log's monthly partitions up to `months_ahead`; returns how many."""
    return await ensure_month_partitions(session, "platform.audit_log", months_ahead)
