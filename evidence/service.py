"""Use cases of the evidence log over PostgreSQL: append, query, export.

Checkpoints and proofs over the stored tree live in `tree.py`, attachments in
`attachments.py`.

Every function takes the caller's session, so a request's effect, its audit record and
its idempotency completion commit together (the platform pipeline owns the transaction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.platform.errors import NotFoundError, ValidationError
from evidence import exports, merkle, records, tree
from evidence.checkpoints import Checkpoint


class RecordNotFoundError(NotFoundError):
    """No evidence record with this id."""


class UnknownAttachmentError(ValidationError):
    title = "Unknown attachment"


class ExportTooLargeError(ValidationError):
    title = "Export too large"


@dataclass(frozen=True, slots=True)
class Appended:
    id: str
    seq: int
    leaf_hash: bytes
    collected_at: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "seq": self.seq,
            "leaf_hash": self.leaf_hash.hex(),
            "collected_at": self.collected_at,
        }


@dataclass(frozen=True, slots=True)
class StoredRecord:
    record: dict[str, Any]
    seq: int
    leaf_hash: bytes


@dataclass(frozen=True, slots=True)
class Filters:
    control: str | None = None
    type: str | None = None
    result: str | None = None
    commit: str | None = None
    collected_from: datetime | None = None
    collected_to: datetime | None = None


# ---- append ---------------------------------------------------------------------------


async def append(
    session: AsyncSession,
    submission: Mapping[str, Any],
    *,
    submitter: records.Submitter,
    now: datetime | None = None,
) -> Appended:
    """Append one prepared submission (see records.prepare_submission) to the log, with
    `submitter` (the verified writer) inside the record and so inside its leaf hash.

    Takes the log_state row lock, so concurrent appends queue and `seq` has no gaps.
    Raises UnknownAttachmentError when an attachment digest was never uploaded.
    """
    state = (
        await session.execute(
            text(
                "SELECT size, frontier, last_collected_at FROM evidence.log_state "
                "WHERE id = 1 FOR UPDATE"
            )
        )
    ).one()
    digests = sorted({item["digest"] for item in submission.get("attachments", [])})
    if digests:
        found = set(
            (
                await session.execute(
                    text("SELECT digest FROM evidence.attachments WHERE digest = ANY(:digests)"),
                    {"digests": digests},
                )
            ).scalars()
        )
        missing = [digest for digest in digests if digest not in found]
        if missing:
            raise UnknownAttachmentError(f"attachment {missing[0]} was never uploaded")
    size: int = state.size
    frontier = [bytes(item) for item in state.frontier]
    moment = now or datetime.now(UTC)
    # collected_at never goes backwards along seq, even if the clock does: the query API
    # relies on it to turn a time range into a seq range.
    if state.last_collected_at is not None and moment < state.last_collected_at:
        moment = state.last_collected_at
    record_id = records.new_record_id()
    record = records.build_record(submission, record_id, size, moment, submitter)
    leaf = records.record_leaf_hash(record)
    new_frontier, completed = merkle.frontier_append(frontier, size, leaf)
    commit = record.get("subject", {}).get("commit")
    await session.execute(
        text(
            """
            WITH rec AS (
                INSERT INTO evidence.records
                    (seq, id, type, result, commit, collected_at, record, leaf_hash)
                VALUES (:seq, :id, :type, :result, :commit, :collected_at,
                        CAST(:record AS jsonb), :leaf)
            ), controls AS (
                INSERT INTO evidence.record_controls (control, seq)
                SELECT control, :seq FROM unnest(CAST(:controls AS text[])) AS control
            ), nodes AS (
                INSERT INTO evidence.tree_nodes (level, index, hash)
                SELECT * FROM unnest(CAST(:levels AS smallint[]), CAST(:indexes AS bigint[]),
                                     CAST(:hashes AS bytea[]))
            )
            UPDATE evidence.log_state
            SET size = :seq + 1, frontier = CAST(:frontier AS bytea[]),
                last_collected_at = :collected_at
            WHERE id = 1
            """
        ),
        {
            "seq": size,
            "id": record_id,
            "type": record["type"],
            "result": record["result"],
            "commit": commit,
            "collected_at": moment,
            "record": records.canonical_bytes(record).decode(),
            "leaf": leaf,
            "controls": list(record["control_refs"]),
            "levels": [level for level, _, _ in completed],
            "indexes": [index for _, index, _ in completed],
            "hashes": [digest for _, _, digest in completed],
            "frontier": new_frontier,
        },
    )
    return Appended(record_id, size, leaf, record["collected_at"])


async def log_size(session: AsyncSession) -> int:
    size: int = (
        await session.execute(text("SELECT size FROM evidence.log_state WHERE id = 1"))
    ).scalar_one()
    return size


# ---- reads ----------------------------------------------------------------------------


async def get_record(session: AsyncSession, record_id: str) -> StoredRecord:
    """Raises RecordNotFoundError."""
    row = (
        await session.execute(
            text("SELECT record, seq, leaf_hash FROM evidence.records WHERE id = :id"),
            {"id": record_id},
        )
    ).first()
    if row is None:
        raise RecordNotFoundError(f"no evidence record {record_id}")
    return StoredRecord(dict(row.record), row.seq, bytes(row.leaf_hash))


async def seq_range(session: AsyncSession, filters: Filters) -> tuple[int, int | None] | None:
    """Turn the [from, to) time range into a seq range [low, high); None if it is empty."""
    first_at = text(
        "SELECT seq FROM evidence.records WHERE collected_at >= :at "
        "ORDER BY collected_at, seq LIMIT 1"
    )
    low = 0
    if filters.collected_from is not None:
        found = (await session.execute(first_at, {"at": filters.collected_from})).scalar()
        if found is None:
            return None
        low = int(found)
    high: int | None = None
    if filters.collected_to is not None:
        found = (await session.execute(first_at, {"at": filters.collected_to})).scalar()
        high = None if found is None else int(found)
    if high is not None and high <= low:
        return None
    return low, high


async def query(
    session: AsyncSession, filters: Filters, after_seq: int | None, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """Records matching every filter, in seq order; returns (page, last seq if more)."""
    bounds = await seq_range(session, filters)
    if bounds is None:
        return [], None
    low, high = bounds
    if after_seq is not None:
        low = max(low, after_seq + 1)
    params: dict[str, Any] = {"low": low, "limit": limit + 1}
    conditions = ["{seq} >= :low"]
    if high is not None:
        conditions.append("{seq} < :high")
        params["high"] = high
    for column, value in (
        ("type", filters.type),
        ("result", filters.result),
        ("commit", filters.commit),
    ):
        if value is not None:
            conditions.append(f"r.{column} = :{column}")
            params[column] = value
    if filters.control is not None:
        seq_column = "c.seq"
        source = (
            "evidence.record_controls c JOIN evidence.records r ON r.seq = c.seq "
            "AND c.control = :control"
        )
        params["control"] = filters.control
    else:
        seq_column = "r.seq"
        source = "evidence.records r"
    where = " AND ".join(condition.format(seq=seq_column) for condition in conditions)
    statement = (
        f"SELECT r.record, r.seq FROM {source} WHERE {where} "  # noqa: S608 - fixed fragments
        f"ORDER BY {seq_column} LIMIT :limit"
    )
    rows = (await session.execute(text(statement), params)).all()
    page = [dict(row.record) for row in rows[:limit]]
    more = len(rows) > limit
    return page, (rows[limit - 1].seq if more else None)


async def records_in_seq_range(session: AsyncSession, low: int, high: int) -> list[StoredRecord]:
    rows = await session.execute(
        text(
            "SELECT record, seq, leaf_hash FROM evidence.records "
            "WHERE seq >= :low AND seq < :high ORDER BY seq"
        ),
        {"low": low, "high": high},
    )
    return [StoredRecord(dict(row.record), row.seq, bytes(row.leaf_hash)) for row in rows]


async def record_at(session: AsyncSession, seq: int) -> StoredRecord | None:
    row = (
        await session.execute(
            text("SELECT record, seq, leaf_hash FROM evidence.records WHERE seq = :seq"),
            {"seq": seq},
        )
    ).first()
    return None if row is None else StoredRecord(dict(row.record), row.seq, bytes(row.leaf_hash))


async def covered_records(
    session: AsyncSession, filters: Filters, max_records: int
) -> tuple[Checkpoint | None, list[StoredRecord], int, int]:
    """The records in [from, to) that the latest checkpoint covers, as a seq range.

    Returns (checkpoint, records, low, high). Raises ExportTooLargeError past `max_records`.
    """
    checkpoint = await tree.latest_checkpoint(session)
    if checkpoint is None:
        return None, [], 0, 0
    bounds = await seq_range(session, filters)
    if bounds is None:
        return checkpoint, [], 0, 0
    low, high = bounds
    high = checkpoint.size if high is None else min(high, checkpoint.size)
    if high <= low:
        return checkpoint, [], low, low
    if high - low > max_records:
        raise ExportTooLargeError(
            f"{high - low} records in range, more than {max_records}; narrow from/to"
        )
    return checkpoint, await records_in_seq_range(session, low, high), low, high


# ---- exports --------------------------------------------------------------------------


async def records_for_export(
    session: AsyncSession, filters: Filters, max_records: int
) -> list[dict[str, Any]]:
    """Every record in [from, to), in seq order. Raises ExportTooLargeError."""
    bounds = await seq_range(session, filters)
    if bounds is None:
        return []
    low, high = bounds
    if high is None:
        high = await log_size(session)
    if high - low > max_records:
        raise ExportTooLargeError(
            f"{high - low} records in range, more than {max_records}; narrow from/to"
        )
    return [stored.record for stored in await records_in_seq_range(session, low, high)]


async def export_bundle(
    session: AsyncSession,
    filters: Filters,
    max_records: int,
    public_keys: Sequence[Mapping[str, Any]],
) -> dict[str, Any] | None:
    """The offline-verifiable bundle for [from, to): records the latest checkpoint covers,
    their proofs, the neighbours that prove nothing was cut off, the checkpoint and keys.

    Returns None while no checkpoint exists. Raises ExportTooLargeError.
    """
    checkpoint, stored, low, high = await covered_records(session, filters, max_records)
    if checkpoint is None:
        return None
    size = checkpoint.size
    before = await record_at(session, low - 1) if low > 0 and stored else None
    if not stored and filters.collected_from is not None:
        # An empty window still needs its edges proven: the last record before it.
        bounds = await seq_range(session, Filters(collected_from=filters.collected_from))
        edge = bounds[0] if bounds is not None else size
        low = high = min(edge, size)
        before = await record_at(session, low - 1) if low > 0 else None
    after = await record_at(session, high) if high < size else None
    proven = [item for item in (*stored, before, after) if item is not None]
    proofs = await tree.inclusion_proofs(session, [item.seq for item in proven], size)

    def entry(item: StoredRecord) -> dict[str, Any]:
        return exports.bundle_entry(
            item.record, item.leaf_hash, tree.proof_json(item.seq, size, proofs[item.seq])
        )

    return exports.bundle(
        collected_from=filters.collected_from,
        collected_to=filters.collected_to,
        first_seq=low,
        end_seq=high,
        checkpoint=checkpoint.as_json(),
        public_keys=public_keys,
        entries=[entry(item) for item in stored],
        before=entry(before) if before else None,
        after=entry(after) if after else None,
    )
