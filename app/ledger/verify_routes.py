"""`GET /v1/ledger/verify`: its query (cursor, from_seq, limit), its response schema, the
source of the anchored chain head it compares against, and the handler."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from app.ledger import api
from app.ledger.schemas import balances_json
from app.platform import web
from app.platform.errors import ValidationError
from app.platform.web import Call, Result

_VERIFY_BALANCES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "posted": {"type": "integer"},
        "pending_debits": {"type": "integer"},
        "pending_credits": {"type": "integer"},
        "available": {"type": "integer"},
    },
}
VERIFY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["ok", "complete", "entries_checked", "accounts_checked"],
    "properties": {
        "ok": {"type": "boolean"},
        "complete": {"type": "boolean"},
        "entries_checked": {"type": "integer"},
        "accounts_checked": {"type": "integer"},
        "next_from_seq": {"type": ["integer", "null"]},
        "next_cursor": {"type": ["string", "null"]},
        "anchor": {
            "type": "object",
            "description": "The live chain against the latest head anchored in the evidence "
            "log: consistent, none (nothing anchored), unavailable, or a contradiction "
            "(hash_mismatch, anchored_entry_missing).",
            "properties": {
                "status": {"type": "string"},
                "record_id": {"type": ["string", "null"]},
                "seq": {"type": ["integer", "null"]},
                "hash": {"type": ["string", "null"]},
                "live_hash": {"type": ["string", "null"]},
            },
        },
        "first_bad_entry": {
            "type": "object",
            "properties": {
                "seq": {"type": "integer"},
                "id": {"type": ["string", "null"]},
                "transaction_id": {"type": ["string", "null"]},
                "reason": {"type": "string"},
            },
        },
        "first_bad_balance": {
            "type": "object",
            "properties": {
                "account_id": {"type": "string"},
                "stored": _VERIFY_BALANCES_SCHEMA,
                "recomputed": _VERIFY_BALANCES_SCHEMA,
            },
        },
    },
}


def _verify_query(query: Mapping[str, str]) -> tuple[int | None, str | None, int]:
    """Where to start (a cursor we issued, or from_seq) and the limit per call.

    None for a part means it is done: the cursor of a check cut short in one part only
    goes on with that part.
    """
    limit = _positive(query, "limit", api.MAX_VERIFY_ENTRIES)
    cursor = web.decode_cursor(query)
    if cursor is None:
        return _positive(query, "from_seq", 1), "", limit
    seq, after = cursor.get("seq"), cursor.get("after")
    if not (seq is None or (isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1)):
        raise ValidationError("cursor is not one we issued")
    if not (after is None or (isinstance(after, str) and len(after) <= 64)):
        raise ValidationError("cursor is not one we issued")
    return seq, after, limit


def _positive(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 12 or not 1 <= int(raw) <= api.MAX_VERIFY_ENTRIES:
        raise ValidationError(f"{name} must be an integer from 1 to {api.MAX_VERIFY_ENTRIES}")
    return int(raw)


class AnchorSource(Protocol):
    """Where verify finds the latest chain head anchored in the evidence log (the
    composition root's services carry it as a `ledger_anchors` field, or None)."""

    async def latest(self) -> tuple[api.ChainHead, str] | None:
        """The anchored head and its evidence record id. Raises ConnectionError."""


async def verify(call: Call, session: AsyncSession) -> Result:
    from_seq, after_account, limit = _verify_query(call.query)
    anchors: AnchorSource | None = getattr(call.services, "ledger_anchors", None)
    found: tuple[api.ChainHead, str] | None = None
    unavailable = False
    if anchors is not None:
        try:
            found = await anchors.latest()
        except ConnectionError:
            unavailable = True
    report = await api.verify_ledger(
        session,
        from_seq=from_seq,
        after_account=after_account,
        limit=limit,
        anchored=found[0] if found else None,
        anchor_record_id=found[1] if found else None,
    )
    anchor = report.anchor
    anchor_json: dict[str, Any] = {
        "status": "unavailable" if unavailable else anchor.status,
        "record_id": anchor.record_id,
        "seq": anchor.anchored.seq if anchor.anchored else None,
        "hash": anchor.anchored.hash if anchor.anchored else None,
        "live_hash": anchor.live_hash,
    }
    chain, balances = report.chain, report.balances
    body: dict[str, Any] = {
        "ok": report.ok,
        "complete": report.complete,
        "entries_checked": chain.entries_checked,
        "accounts_checked": balances.accounts_checked,
        "next_from_seq": chain.next_from_seq,
        "anchor": anchor_json,
        "next_cursor": None
        if report.complete
        else web.encode_cursor({"seq": chain.next_from_seq, "after": balances.next_after_account}),
    }
    if chain.first_bad_entry is not None:
        bad = chain.first_bad_entry
        body["first_bad_entry"] = {
            "seq": bad.seq,
            "id": bad.entry_id,
            "transaction_id": bad.transaction_id,
            "reason": bad.reason,
        }
    if balances.first_bad_balance is not None:
        mismatch = balances.first_bad_balance
        body["first_bad_balance"] = {
            "account_id": mismatch.account_id,
            "stored": balances_json(mismatch.stored),
            "recomputed": balances_json(mismatch.recomputed),
        }
    return Result(200, body)


VERIFY_QUERY = (
    {
        "name": "from_seq",
        "in": "query",
        "required": False,
        "description": "Check the chain from this journal seq on (and every balance).",
        "schema": {"type": "integer", "minimum": 1},
    },
    {
        "name": "cursor",
        "in": "query",
        "required": False,
        "description": "Go on where a cut-short check stopped (its next_cursor).",
        "schema": {"type": "string"},
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "At most this many entries and this many accounts in one call.",
        "schema": {"type": "integer", "minimum": 1},
    },
)
