"""The Merkle tree over PostgreSQL: signed checkpoints of its head, and its proofs.

The pure tree arithmetic is in `merkle.py` and the checkpoint note format in
`checkpoints.py`; this room reads the stored nodes and checkpoints and signs new heads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.errors import InvariantViolation, ValidationError
from evidence import merkle, records
from evidence.checkpoints import Checkpoint, note_text
from evidence.signing import TransitSigner

MAX_PROOF_NODES_PER_QUERY = 50_000


class TreeSizeError(ValidationError):
    code = "invalid_tree_size"
    title = "Invalid tree size"


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
