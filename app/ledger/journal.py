"""The journal: writing an entry (postings, balances, chain append) and verifying the chain.

Every journal entry (a transaction's creation, or its post, void or expiry) is chained as
hash = sha256(prev_hash || JCS(entry)) (`chain.py`). The single `ledger.chain_head` row
makes the chain linear; a writer takes it before the balance rows (see `transactions`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.ledger import chain
from app.ledger.data import AnchorReport, BadEntry, ChainHead, ChainReport
from app.ledger.domain import JournalKind, Movement
from app.ledger.errors import refusal_from_sql
from app.platform.db import send_with_commit
from app.platform.errors import DomainError, InvariantViolation

VERIFY_BATCH_SIZE = 500
MAX_VERIFY_ENTRIES = 10_000_000

# Migrations ledger_0003 to ledger_0005, the home of the balance rules: locks the chain
# head, then the balance rows, refuses what they forbid, sets the balances, inserts the
# postings and appends the entries in order; sent with the COMMIT, in its round trip. Its
# one parameter is the batch as JSON text (see ledger_0004 for its shape): far cheaper to
# send than fourteen arrays.
_APPLY_ENTRIES: LiteralString = "SELECT ledger.apply_entries(CAST(%(batch)s AS jsonb))"


@dataclass(frozen=True, slots=True)
class EntryDraft:
    """One journal entry to write: its postings, as movements of the balance buckets."""

    transaction_id: str
    entry_id: str
    kind: JournalKind
    detail: Mapping[str, Any]
    movements: Sequence[Movement]


def creation_detail(
    status: str,
    expires_at: datetime | None,
    description: str | None,
    external_ref: str | None,
    reverses: str | None,
) -> dict[str, Any]:
    """What a `create` entry records of its transaction row (hashed, then re-read by verify)."""
    return {
        "status": str(status),
        "expires_at": expires_at,
        "description": description,
        "external_ref": external_ref,
        "reverses": reverses,
    }


def change_detail(status: str, posted_amount_minor: int | None) -> dict[str, Any]:
    """What a post, void or expire entry records of its status-change row."""
    return {"status": str(status), "posted_amount_minor": posted_amount_minor}


def _posting_fields(movement: Movement) -> dict[str, Any]:
    """A posting as the chain hashes it, but for its `created_at` (the writer's time)."""
    return {
        "leg": movement.leg,
        "account_id": movement.account_id,
        "direction": movement.direction,
        "amount_minor": movement.amount_minor,
        "currency": movement.currency,
        "effect": movement.effect,
    }


async def apply_entries(
    session: AsyncSession, drafts: Sequence[EntryDraft], *, name_index: bool = False
) -> None:
    """Apply the entries' movements to the balances, in order, and append the entries to
    the hash chain: one call of `ledger.apply_entries()`, which holds the balance rules.

    A refusal there (unknown account, currency mismatch, overdraft) comes out as the
    ledger's DomainError; with `name_index` it carries the refused draft's position as
    `index`. The call is sent with the COMMIT, in one round trip
    (`db.send_with_commit`, last), after the caller's audit record and idempotency
    completion: it locks the chain head row, which serializes every journal write of the
    whole ledger, then the balance rows, and both are held only for the call plus the
    COMMIT, with no round trip in between. Entries are thereby chained in commit order.
    Their time is read there, under the locks: the canonical bytes go cut where it belongs
    (`chain.canonical_parts`), and hash = sha256(prev_hash || JCS(entry)) is computed by
    PostgreSQL over them joined with that time; `verify` recomputes it in Python.
    """
    if not drafts:
        raise InvariantViolation("ledger.entry_written", "nothing to write")
    postings = [
        (index, draft, movement)
        for index, draft in enumerate(drafts)
        for movement in draft.movements
    ]
    parts = [
        chain.canonical_parts(
            entry_id=d.entry_id,
            transaction_id=d.transaction_id,
            kind=str(d.kind),
            detail=d.detail,
            postings=[_posting_fields(m) for m in d.movements],
        )
        for d in drafts
    ]
    batch = {
        "postings": [
            [
                index,
                draft.entry_id,
                draft.transaction_id,
                movement.leg,
                movement.account_id,
                movement.direction,
                movement.amount_minor,
                movement.currency,
                movement.effect,
            ]
            for index, draft, movement in postings
        ],
        "entries": [
            [d.entry_id, d.transaction_id, str(d.kind), [part.hex() for part in cut]]
            for d, cut in zip(drafts, parts, strict=True)
        ],
    }
    written = {"batch": json.dumps(batch, separators=(",", ":"))}

    def refusal(error: psycopg.Error) -> DomainError | None:
        refused = refusal_from_sql(
            error.sqlstate, error.diag.message_primary or "", error.diag.message_detail
        )
        if refused is None:
            return None
        domain_error, index = refused
        if name_index:
            domain_error.extra["index"] = index
        return domain_error

    # Its result is not read: the function raises on anything it refuses.
    await send_with_commit(session, _APPLY_ENTRIES, written, last=True, refusal=refusal)


async def verify_chain(
    session: AsyncSession,
    *,
    from_seq: int = 1,
    max_entries: int = MAX_VERIFY_ENTRIES,
    batch_size: int = VERIFY_BATCH_SIZE,
) -> ChainReport:
    """Recompute entries `from_seq`.. (at most `max_entries`) from the stored rows.

    A check that starts past 1 links its first entry to the stored hash of the one before,
    which the previous, cut-short check verified.
    """
    if from_seq < 1 or max_entries < 1:
        raise InvariantViolation("ledger.verify_range", "from_seq and max_entries start at 1")
    head = (
        await session.execute(
            text("SELECT last_seq, last_hash FROM ledger.chain_head WHERE id = 1")
        )
    ).one()
    head_seq = int(head.last_seq)
    last_seq = min(head_seq, from_seq - 1 + max_entries)
    running = chain.GENESIS_HASH
    if from_seq > 1:
        before = (
            await session.execute(
                text("SELECT hash FROM ledger.journal_entries WHERE seq = :seq"),
                {"seq": from_seq - 1},
            )
        ).first()
        if before is None:
            return ChainReport(False, 0, BadEntry(from_seq - 1, None, None, "missing"))
        running = before.hash
    checked = 0
    expected_seq = from_seq
    while expected_seq <= last_seq:
        entries = (
            await session.execute(
                text(
                    """
                    SELECT seq, id, transaction_id, kind, occurred_at, prev_hash, hash
                    FROM ledger.journal_entries
                    WHERE seq >= :from AND seq <= :to
                    ORDER BY seq
                    """
                ),
                {"from": expected_seq, "to": min(last_seq, expected_seq + batch_size - 1)},
            )
        ).all()
        if not entries:
            return ChainReport(False, checked, BadEntry(expected_seq, None, None, "missing"))
        ids = [entry.id for entry in entries]
        postings, details = await _entry_rows(session, ids)
        for entry in entries:
            bad = _check_entry(entry, expected_seq, running, details, postings)
            if bad is not None:
                return ChainReport(False, checked, bad)
            running = entry.hash
            checked += 1
            expected_seq += 1
    if last_seq < head_seq:
        return ChainReport(True, checked, None, next_from_seq=last_seq + 1)
    if running != head.last_hash:
        return ChainReport(False, checked, BadEntry(last_seq, None, None, "head_mismatch"))
    return ChainReport(True, checked, None)


async def chain_head(session: AsyncSession) -> ChainHead:
    row = (
        await session.execute(
            text("SELECT last_seq, last_hash FROM ledger.chain_head WHERE id = 1")
        )
    ).one()
    return ChainHead(int(row.last_seq), str(row.last_hash))


async def check_anchor(
    session: AsyncSession, anchored: ChainHead | None, record_id: str | None = None
) -> AnchorReport:
    """Compare the live chain with a head anchored in the evidence log.

    The anchored hash commits to every entry up to its seq, so a chain rewritten
    consistently (rows, hashes and head, as the database owner could) still disagrees
    here: the evidence log lives in another database and its records are signed and
    Merkle-proven.
    """
    if anchored is None:
        return AnchorReport("none", None)
    row = (
        await session.execute(
            text("SELECT hash FROM ledger.journal_entries WHERE seq = :seq"),
            {"seq": anchored.seq},
        )
    ).first()
    if anchored.seq == 0:
        live = chain.GENESIS_HASH
    elif row is None:
        return AnchorReport("anchored_entry_missing", anchored, record_id)
    else:
        live = str(row.hash)
    status = "consistent" if live == anchored.hash else "hash_mismatch"
    return AnchorReport(status, anchored, record_id, live)


async def _entry_rows(
    session: AsyncSession, ids: Sequence[str]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]:
    """The stored postings and transaction details of the entries `ids`."""
    postings: dict[str, list[dict[str, Any]]] = {entry_id: [] for entry_id in ids}
    for row in (
        await session.execute(
            text(
                """
                SELECT entry_id, leg, account_id, direction, amount_minor, currency, effect,
                       created_at
                FROM ledger.postings WHERE entry_id = ANY(:ids) ORDER BY id
                """
            ),
            {"ids": ids},
        )
    ).all():
        postings[row.entry_id].append(
            {
                "leg": row.leg,
                "account_id": row.account_id,
                "direction": row.direction,
                "amount_minor": row.amount_minor,
                "currency": row.currency,
                "effect": row.effect,
                "created_at": row.created_at,
            }
        )
    details: dict[str, dict[str, Any]] = {}
    for row in (
        await session.execute(
            text(
                """
                SELECT entry_id, status, expires_at, description, external_ref, reverses
                FROM ledger.transactions WHERE entry_id = ANY(:ids)
                """
            ),
            {"ids": ids},
        )
    ).all():
        details[row.entry_id] = creation_detail(
            row.status, row.expires_at, row.description, row.external_ref, row.reverses
        )
    for row in (
        await session.execute(
            text(
                """
                SELECT entry_id, status, posted_amount_minor
                FROM ledger.transaction_status_changes WHERE entry_id = ANY(:ids)
                """
            ),
            {"ids": ids},
        )
    ).all():
        details[row.entry_id] = change_detail(row.status, row.posted_amount_minor)
    return postings, details


def _check_entry(
    entry: Any,
    expected_seq: int,
    running: str,
    details: Mapping[str, dict[str, Any]],
    postings: Mapping[str, list[dict[str, Any]]],
) -> BadEntry | None:
    def bad(reason: str) -> BadEntry:
        return BadEntry(entry.seq, entry.id, entry.transaction_id, reason)

    if entry.seq != expected_seq:
        return BadEntry(expected_seq, None, None, "missing")
    if entry.prev_hash != running:
        return bad("prev_hash_mismatch")
    detail = details.get(entry.id)
    if detail is None:
        return bad("transaction_row_missing")
    canonical = chain.canonical_entry(
        entry_id=entry.id,
        transaction_id=entry.transaction_id,
        kind=entry.kind,
        occurred_at=entry.occurred_at,
        detail=detail,
        postings=postings.get(entry.id, []),
    )
    if chain.chain_hash(running, canonical) != entry.hash:
        return bad("hash_mismatch")
    return None
