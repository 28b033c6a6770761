"""The journal: writing an entry (postings, balances, chain append) and verifying the chain.

Every journal entry (a transaction's creation, or its post, void or expiry) is chained as
hash = sha256(prev_hash || JCS(entry)) (`chain.py`). The single `ledger.chain_head` row
makes the chain linear; it is the last lock a writer takes (see `transactions`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.ledger import chain
from app.ledger.data import AnchorReport, BadEntry, ChainHead, ChainReport
from app.ledger.domain import AccountState, JournalKind, Movement
from app.platform.db import send_with_commit
from app.platform.errors import InvariantViolation

VERIFY_BATCH_SIZE = 500
MAX_VERIFY_ENTRIES = 10_000_000

# Migration ledger_0002: sets the balances, inserts the postings, then takes the chain head
# lock and appends the entries in order; sent with the COMMIT, in its round trip.
_WRITE_ENTRIES: LiteralString = """
    SELECT ledger.write_entries(
        CAST(%(b_ids)s AS text[]), CAST(%(b_posted)s AS numeric[]), CAST(%(b_debits)s AS numeric[]),
        CAST(%(b_credits)s AS numeric[]), CAST(%(updated)s AS timestamptz),
        CAST(%(p_entries)s AS text[]), CAST(%(p_transactions)s AS text[]),
        CAST(%(p_legs)s AS smallint[]), CAST(%(p_accounts)s AS text[]),
        CAST(%(p_directions)s AS text[]), CAST(%(p_amounts)s AS bigint[]),
        CAST(%(p_currencies)s AS text[]), CAST(%(p_effects)s AS text[]),
        CAST(%(p_after)s AS numeric[]), CAST(%(p_occurred)s AS timestamptz[]),
        CAST(%(e_ids)s AS text[]), CAST(%(e_transactions)s AS text[]), CAST(%(e_kinds)s AS text[]),
        CAST(%(e_occurred)s AS timestamptz[]), CAST(%(e_canonicals)s AS bytea[])
    ) AS last_seq
    """


@dataclass(frozen=True, slots=True)
class EntryDraft:
    """One journal entry to write: its postings with their running balances."""

    transaction_id: str
    entry_id: str
    kind: JournalKind
    occurred_at: datetime
    detail: Mapping[str, Any]
    movements: Sequence[Movement]
    balance_after_minor: Sequence[int]


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


def _posting_fields(movement: Movement, created_at: datetime) -> dict[str, Any]:
    return {
        "leg": movement.leg,
        "account_id": movement.account_id,
        "direction": movement.direction,
        "amount_minor": movement.amount_minor,
        "currency": movement.currency,
        "effect": movement.effect,
        "created_at": created_at,
    }


async def write_entries(
    session: AsyncSession, drafts: Sequence[EntryDraft], balances: Mapping[str, AccountState]
) -> None:
    """Set the touched accounts' balances to `balances`, insert the entries' postings and
    append the entries to the hash chain, in order: one call of `ledger.write_entries()`.

    The call is sent with the COMMIT, in one round trip (`db.send_with_commit`, last),
    after the caller's audit record and idempotency completion: the account rows are
    locked since the caller read them, so nothing can change them meanwhile, and the chain
    head row, which serializes every journal write of the whole ledger, is taken last
    inside the call and held only for the append plus the COMMIT, with no round trip in
    between. Entries are thereby chained in commit order. hash =
    sha256(prev_hash || JCS(entry)) is computed by PostgreSQL over the exact canonical
    bytes we send, and `verify` recomputes it in Python.
    """
    if not drafts:
        raise InvariantViolation("ledger.entry_written", "nothing to write")
    postings: list[tuple[EntryDraft, Movement, int]] = []
    for draft in drafts:
        if len(draft.balance_after_minor) != len(draft.movements):
            raise InvariantViolation("ledger.running_balance", "one running balance per posting")
        postings.extend(
            (draft, movement, after)
            for movement, after in zip(draft.movements, draft.balance_after_minor, strict=True)
        )
    touched = sorted({movement.account_id for _, movement, _ in postings})
    written = {
        "b_ids": touched,
        "b_posted": [str(balances[a].posted_minor) for a in touched],
        "b_debits": [str(balances[a].pending_debits_minor) for a in touched],
        "b_credits": [str(balances[a].pending_credits_minor) for a in touched],
        "updated": max(d.occurred_at for d in drafts),
        "p_entries": [d.entry_id for d, _, _ in postings],
        "p_transactions": [d.transaction_id for d, _, _ in postings],
        "p_legs": [m.leg for _, m, _ in postings],
        "p_accounts": [m.account_id for _, m, _ in postings],
        "p_directions": [m.direction for _, m, _ in postings],
        "p_amounts": [m.amount_minor for _, m, _ in postings],
        "p_currencies": [m.currency for _, m, _ in postings],
        "p_effects": [m.effect for _, m, _ in postings],
        "p_after": [str(after) for _, _, after in postings],
        "p_occurred": [d.occurred_at for d, _, _ in postings],
        "e_ids": [d.entry_id for d in drafts],
        "e_transactions": [d.transaction_id for d in drafts],
        "e_kinds": [str(d.kind) for d in drafts],
        "e_occurred": [d.occurred_at for d in drafts],
        "e_canonicals": [
            chain.canonical_entry(
                entry_id=d.entry_id,
                transaction_id=d.transaction_id,
                kind=str(d.kind),
                occurred_at=d.occurred_at,
                detail=d.detail,
                postings=[_posting_fields(m, d.occurred_at) for m in d.movements],
            )
            for d in drafts
        ],
    }

    # Its result is not read: the function raises on anything it cannot write.
    await send_with_commit(session, _WRITE_ENTRIES, written, last=True)


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
