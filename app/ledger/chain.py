"""The journal's hash chain: the canonical bytes of an entry and how entries link.

Pure (no I/O), like domain.py: the writer, the verifier and offline tools share it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import rfc8785

from app.platform.utc import rfc3339_fixed

GENESIS_HASH = "0" * 64


# One fixed rendering (microseconds, Z) so a re-read timestamp hashes the same.
format_time = rfc3339_fixed


def canonical_entry(
    *,
    entry_id: str,
    transaction_id: str,
    kind: str,
    occurred_at: datetime,
    detail: Mapping[str, Any],
    postings: Iterable[Mapping[str, Any]],
) -> bytes:
    """RFC 8785 (JCS) bytes of one journal entry.

    Amounts are rendered as decimal strings: JCS follows I-JSON, which cannot carry
    integers beyond 2^53 exactly, and amounts go up to 2^63-1. The sequence number is not
    part of the entry: the prev_hash link already fixes each entry's place in the chain.
    """
    document: Any = {
        "id": entry_id,
        "transaction_id": transaction_id,
        "kind": kind,
        "occurred_at": format_time(occurred_at),
        "detail": {key: _jcs_value(value) for key, value in detail.items()},
        "postings": [
            {key: _jcs_value(value) for key, value in posting.items()} for posting in postings
        ],
    }
    encoded: bytes = rfc8785.dumps(document)
    return encoded


def _jcs_value(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return format_time(value)
    return str(value)


def chain_hash(prev_hash: str, canonical: bytes) -> str:
    """hash = sha256(prev_hash || JCS(entry)), over the raw 32 bytes of prev_hash."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical).hexdigest()
