"""Use cases of the evidence log over PostgreSQL: append, checkpoint, prove, query, export.

Every function takes the caller's session, so a request's effect, its audit record and
its idempotency completion commit together (the platform pipeline owns the transaction).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.errors import InvariantViolation, NotFoundError, ValidationError
from evidence import exports, merkle, records
from evidence.checkpoints import Checkpoint, note_text
from evidence.signing import TransitSigner

MAX_PROOF_NODES_PER_QUERY = 50_000


class RecordNotFoundError(NotFoundError):
    """No evidence record with this id."""


class UnknownAttachmentError(ValidationError):
    title = "Unknown attachment"


class AttachmentTooLargeError(ValidationError):
    status = 413
    title = "Attachment too large"


class TreeSizeError(ValidationError):
    code = "invalid_tree_size"
    title = "Invalid tree size"


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
    session: AsyncSession, submission: Mapping[str, Any], now: datetime | None = None
) -> Appended:
    """Append one prepared submission (see records.prepare_submission) to the log.

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
    record = records.build_record(submission, record_id, size, moment)
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


# ---- checkpoints ----------------------------------------------------------------------


def _checkpoint_from_row(row: Any) -> Checkpoint:
    return Checkpoint(
        origin=row.origin,
        size=row.size,
        root_hash=bytes(row.root_hash),
        timestamp=records.format_time(row.issued_at),
        key_id=row.key_id,
        signature=bytes(row.signature),
    )


async def latest_checkpoint(session: AsyncSession) -> Checkpoint | None:
    row = (
        await session.execute(
            text(
                "SELECT size, origin, root_hash, issued_at, key_id, signature "
                "FROM evidence.checkpoints ORDER BY size DESC LIMIT 1"
            )
        )
    ).first()
    return None if row is None else _checkpoint_from_row(row)


async def checkpoint_at(session: AsyncSession, size: int) -> Checkpoint | None:
    row = (
        await session.execute(
            text(
                "SELECT size, origin, root_hash, issued_at, key_id, signature "
                "FROM evidence.checkpoints WHERE size = :size"
            ),
            {"size": size},
        )
    ).first()
    return None if row is None else _checkpoint_from_row(row)


async def issue_checkpoint(
    sessions: async_sessionmaker[AsyncSession], signer: TransitSigner, origin: str
) -> Checkpoint | None:
    """Sign the current tree head if it grew since the last checkpoint; else return None.

    Raises VaultUnavailableError when OpenBao cannot sign.
    """
    async with sessions() as session, session.begin():
        state = (await session.execute(text("SELECT size, frontier FROM evidence.log_state"))).one()
        latest = await latest_checkpoint(session)
    size: int = state.size
    if size == 0 or (latest is not None and latest.size >= size):
        return None
    root = merkle.frontier_root([bytes(item) for item in state.frontier])
    note = note_text(origin, size, root)
    key_id, signature = await signer.asign(note.encode())
    issued_at = datetime.now(UTC)
    async with sessions() as session, session.begin():
        await session.execute(
            text(
                """
                INSERT INTO evidence.checkpoints
                    (size, origin, root_hash, issued_at, key_id, signature, note)
                VALUES (:size, :origin, :root, :issued_at, :key_id, :signature, :note)
                ON CONFLICT (size) DO NOTHING
                """
            ),
            {
                "size": size,
                "origin": origin,
                "root": root,
                "issued_at": issued_at,
                "key_id": key_id,
                "signature": signature,
                "note": note,
            },
        )
    return Checkpoint(origin, size, root, records.format_time(issued_at), key_id, signature)


# ---- proofs ---------------------------------------------------------------------------


async def fetch_nodes(
    session: AsyncSession, keys: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    wanted = sorted(set(keys))
    found: dict[tuple[int, int], bytes] = {}
    for start in range(0, len(wanted), MAX_PROOF_NODES_PER_QUERY):
        chunk = wanted[start : start + MAX_PROOF_NODES_PER_QUERY]
        rows = await session.execute(
            text(
                """
                SELECT n.level, n.index AS node_index, n.hash
                FROM unnest(CAST(:levels AS smallint[]), CAST(:indexes AS bigint[]))
                     AS k(level, index)
                JOIN evidence.tree_nodes n ON n.level = k.level AND n.index = k.index
                """
            ),
            {"levels": [level for level, _ in chunk], "indexes": [index for _, index in chunk]},
        )
        for row in rows:
            found[(int(row.level), int(row.node_index))] = bytes(row.hash)
    if len(found) != len(wanted):
        raise InvariantViolation("merkle_nodes_present", "a stored tree node is missing")
    return found


def _lookup(nodes: Mapping[tuple[int, int], bytes]) -> merkle.NodeLookup:
    return lambda level, index: nodes[(level, index)]


async def inclusion_proofs(
    session: AsyncSession, indexes: Sequence[int], size: int
) -> dict[int, list[bytes]]:
    """PATH for each leaf index in a tree of `size`, with all nodes fetched at once."""
    needed: set[tuple[int, int]] = set()
    for index in indexes:
        needed |= merkle.nodes_needed_for_inclusion(index, size)
    nodes = _lookup(await fetch_nodes(session, needed))
    return {index: merkle.inclusion_proof(index, size, nodes) for index in indexes}


async def consistency(session: AsyncSession, first: int, second: int) -> list[bytes]:
    """RFC 9162 consistency proof; both sizes must be covered by a checkpoint.

    Raises TreeSizeError when 0 < first <= second <= latest checkpoint size fails.
    """
    latest = await latest_checkpoint(session)
    limit = latest.size if latest is not None else 0
    if not 0 < first <= second <= limit:
        raise TreeSizeError(f"need 0 < first <= second <= {limit} (the latest checkpoint size)")
    nodes = await fetch_nodes(session, merkle.nodes_needed_for_consistency(first, second))
    return merkle.consistency_proof(first, second, _lookup(nodes))


async def root_at(session: AsyncSession, size: int) -> bytes:
    nodes = await fetch_nodes(session, merkle.nodes_needed_for_root(size))
    return merkle.root_hash(size, _lookup(nodes))


def proof_json(index: int, size: int, hashes: Sequence[bytes]) -> dict[str, Any]:
    return {"leaf_index": index, "tree_size": size, "hashes": [item.hex() for item in hashes]}


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
    checkpoint = await latest_checkpoint(session)
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


# ---- attachments ----------------------------------------------------------------------


async def store_attachment(
    session: AsyncSession, media_type: str, content_base64: str, limit_bytes: int
) -> dict[str, Any]:
    """Store content under its sha-256 digest (idempotent: same bytes, same digest).

    Raises ValidationError for bad base64 and AttachmentTooLargeError past `limit_bytes`.
    """
    if len(content_base64) > (limit_bytes + 2) // 3 * 4 + 4:
        raise AttachmentTooLargeError(f"attachment larger than {limit_bytes} bytes")
    try:
        content = base64.b64decode(content_base64, validate=True)
    except ValueError:
        raise ValidationError("/content_base64: not valid base64") from None
    if len(content) > limit_bytes:
        raise AttachmentTooLargeError(f"attachment larger than {limit_bytes} bytes")
    digest = records.attachment_digest(content)
    await session.execute(
        text(
            """
            INSERT INTO evidence.attachments (digest, media_type, size_bytes, content)
            VALUES (:digest, :media_type, :size, :content)
            ON CONFLICT (digest) DO NOTHING
            """
        ),
        {"digest": digest, "media_type": media_type, "size": len(content), "content": content},
    )
    return {"digest": digest, "media_type": media_type, "size_bytes": len(content)}


async def get_attachment(session: AsyncSession, digest: str) -> dict[str, Any]:
    """Raises NotFoundError."""
    row = (
        await session.execute(
            text(
                "SELECT digest, media_type, size_bytes, content FROM evidence.attachments "
                "WHERE digest = :digest"
            ),
            {"digest": digest},
        )
    ).first()
    if row is None:
        raise NotFoundError(f"no attachment {digest}")
    return {
        "digest": row.digest,
        "media_type": row.media_type,
        "size_bytes": row.size_bytes,
        "content_base64": base64.b64encode(bytes(row.content)).decode(),
    }


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
    proofs = await inclusion_proofs(session, [item.seq for item in proven], size)

    def entry(item: StoredRecord) -> dict[str, Any]:
        return exports.bundle_entry(
            item.record, item.leaf_hash, proof_json(item.seq, size, proofs[item.seq])
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
