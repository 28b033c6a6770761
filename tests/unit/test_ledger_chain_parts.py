"""The canonical bytes the writer sends cut where the time goes (`chain.canonical_parts`):
joined with the time as `format_time` renders it, they are exactly `canonical_entry`, the
bytes `verify` recomputes from the stored rows."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from app.ledger.chain import canonical_entry, canonical_parts, format_time


def _posting(leg: int, account: str, direction: str) -> dict[str, object]:
    return {
        "leg": leg,
        "account_id": account,
        "direction": direction,
        "amount_minor": 9_223_372_036_854_775_807,
        "currency": "USD",
        "effect": "posted",
    }


def test_parts_joined_with_the_time_are_the_canonical_entry_when_text_mimics_a_time() -> None:
    when = datetime(2026, 12, 1, 19, 5, 1, 123456, tzinfo=UTC)
    # Free text that looks like the time, or like a slot, must not be cut.
    detail = {
        "status": "posted",
        "expires_at": None,
        "description": format_time(when),
        "external_ref": "time-0123456789abcdef0123456789abcdef",
        "reverses": None,
    }
    postings = [_posting(0, "acc_a", "debit"), _posting(1, "acc_b", "credit")]

    parts = canonical_parts(
        entry_id="jrn_1", transaction_id="txn_1", kind="create", detail=detail, postings=postings
    )

    assert len(parts) == len(postings) + 2
    expected = canonical_entry(
        entry_id="jrn_1",
        transaction_id="txn_1",
        kind="create",
        occurred_at=when,
        detail=detail,
        postings=[{**posting, "created_at": when} for posting in postings],
    )
    assert format_time(when).encode().join(parts) == expected


# Any text a transaction can carry: control characters, quotes, backslashes, the BMP's
# private use area and characters beyond it (which JCS and code-point order sort apart),
# and lone surrogates (which no UTF-8 can carry).
_TEXT = st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=12)
_VALUES = st.one_of(st.none(), st.booleans(), _TEXT, st.integers(), st.sampled_from(["posted"]))


@settings(max_examples=400, deadline=None)
@given(
    detail=st.dictionaries(_TEXT, _VALUES, max_size=5),
    postings=st.lists(st.dictionaries(_TEXT, _VALUES, max_size=4), max_size=3),
    entry_id=_TEXT,
)
def test_entry_bytes_are_rfc8785_of_the_entry_when_text_is_arbitrary(
    detail: dict[str, object], postings: list[dict[str, object]], entry_id: str
) -> None:
    """The encoder `canonical_entry` uses is RFC 8785 itself, byte for byte, or the same
    refusal, for whatever text, keys included, an entry holds."""
    when = datetime(2026, 12, 1, 19, 5, 1, 123456, tzinfo=UTC)
    document = {
        "id": entry_id,
        "transaction_id": "txn_1",
        "kind": "create",
        "occurred_at": format_time(when),
        "detail": {key: _as_jcs(value) for key, value in detail.items()},
        "postings": [{key: _as_jcs(value) for key, value in p.items()} for p in postings],
    }
    try:
        expected = rfc8785.dumps(document)
    except ValueError as refusal:  # CanonicalizationError, or UnicodeEncodeError of a key
        with pytest.raises(type(refusal)):
            _entry(entry_id, when, detail, postings)
        return
    assert _entry(entry_id, when, detail, postings) == expected


def test_entry_bytes_are_rfc8785_of_the_entry_when_keys_sort_apart_in_utf16() -> None:
    """U+FF5E sorts after U+1F600 in UTF-16 (a surrogate pair starts at 0xD83D) and before
    it in code points: the entry follows JCS."""
    when = datetime(2026, 12, 1, 19, 5, 1, 123456, tzinfo=UTC)
    detail: dict[str, object] = {"\uff5e": "a", "\U0001f600": "b", "\u00e9": StrStatus.POSTED}
    canonical = _entry("jrn_1", when, detail, [])
    assert canonical == rfc8785.dumps(
        {
            "id": "jrn_1",
            "transaction_id": "txn_1",
            "kind": "create",
            "occurred_at": format_time(when),
            "detail": {"\uff5e": "a", "\U0001f600": "b", "\u00e9": "posted"},
            "postings": [],
        }
    )
    assert canonical.index("\U0001f600".encode()) < canonical.index("\uff5e".encode())


class StrStatus(StrEnum):
    POSTED = "posted"


def _as_jcs(value: object) -> object:
    # As the entry renders a value: numbers as decimal strings.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _entry(
    entry_id: str,
    when: datetime,
    detail: dict[str, object],
    postings: list[dict[str, object]],
) -> bytes:
    return canonical_entry(
        entry_id=entry_id,
        transaction_id="txn_1",
        kind="create",
        occurred_at=when,
        detail=detail,
        postings=postings,
    )
