"""The canonical bytes the writer sends cut where the time goes (`chain.canonical_parts`):
joined with the time as `format_time` renders it, they are exactly `canonical_entry`, the
bytes `verify` recomputes from the stored rows."""

from __future__ import annotations

from datetime import UTC, datetime

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
