"""The journal's hash chain: the canonical bytes of an entry and how entries link.

Pure (no I/O), like domain.py: the writer, the verifier and offline tools share it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import rfc8785

from app.platform.errors import InvariantViolation
from app.platform.utc import rfc3339_fixed

GENESIS_HASH = "0" * 64

# The entry document holds only strings, booleans and nulls (`_jcs_value` renders every
# number as a string), and for those RFC 8785 is exactly what the standard library's C
# encoder writes with these options: the same escapes (\b \f \n \r \t, \" \\ and \u00xx
# for the other control characters), UTF-8 left as is, no whitespace. Keys differ only
# in order, and only for keys beyond ASCII (JCS sorts by UTF-16 code units, `sort_keys`
# by code points); such a document, or one that is not valid UTF-8 (a lone surrogate), is
# left to `rfc8785` itself. The C encoder costs about a fifth of the pure-Python one, on
# every transfer (issue 16).
_JCS_OF_TEXT = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), check_circular=False
)


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
    return _encoded(entry_id, transaction_id, kind, format_time(occurred_at), detail, postings)


def canonical_parts(
    *,
    entry_id: str,
    transaction_id: str,
    kind: str,
    detail: Mapping[str, Any],
    postings: Sequence[Mapping[str, Any]],
) -> list[bytes]:
    """`canonical_entry` of an entry whose time is not known yet, cut where it goes.

    The writer (`ledger.apply_entries()`) reads its clock under the balance locks and
    joins these parts with that time rendered as `format_time` does: it is the entry's
    `occurred_at` and every posting's `created_at` (`postings` leave `created_at` out),
    so there are len(postings) + 2 parts. The cut marks a random word, which no text of
    the entry can contain by chance.
    """
    slot = "time-" + secrets.token_hex(16)
    timed = [{**posting, "created_at": slot} for posting in postings]
    parts = _encoded(entry_id, transaction_id, kind, slot, detail, timed).split(slot.encode())
    if len(parts) != len(postings) + 2:
        raise InvariantViolation("ledger.canonical_time_slots", "the time slot is not unique")
    return parts


def _encoded(
    entry_id: str,
    transaction_id: str,
    kind: str,
    occurred_at: str,
    detail: Mapping[str, Any],
    postings: Iterable[Mapping[str, Any]],
) -> bytes:
    rendered_postings = [
        {key: _jcs_value(value) for key, value in posting.items()} for posting in postings
    ]
    document: Any = {
        "id": entry_id,
        "transaction_id": transaction_id,
        "kind": kind,
        "occurred_at": occurred_at,
        "detail": {key: _jcs_value(value) for key, value in detail.items()},
        "postings": rendered_postings,
    }
    if _ascii_keys(document["detail"]) and all(map(_ascii_keys, rendered_postings)):
        try:
            return _JCS_OF_TEXT.encode(document).encode("utf-8")
        except UnicodeEncodeError:
            pass  # rfc8785 refuses it, with its own error
    encoded: bytes = rfc8785.dumps(document)
    return encoded


def _ascii_keys(mapping: Mapping[str, Any]) -> bool:
    return all(isinstance(key, str) and key.isascii() for key in mapping)


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
