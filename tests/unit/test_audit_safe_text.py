"""audit.safe_text: its fast path for clean text gives what the per-character pass gives."""

from __future__ import annotations

import random

from app.platform import audit


def _escape(code_point: int) -> str:
    return f"\\x{code_point:02x}" if code_point < 0x100 else f"\\u{code_point:04x}"


def _character_pass(value: str, limit: int) -> str:
    escaped = "".join(
        char if char.isprintable() and char != "\\" else _escape(ord(char))
        for char in value[: limit + 1]
    )
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"


def test_safe_text_equals_the_character_pass_when_given_mixed_text() -> None:
    chooser = random.Random(16)
    alphabet = "ab_.-/é€ \\\t\n\x00\x7f\u200b"
    samples = ["", "ledger.transaction.create", "req_" + "0" * 24, "a\\b", "x\x00y"]
    samples += ["".join(chooser.choices(alphabet, k=chooser.randint(0, 12))) for _ in range(500)]
    for value in samples:
        for limit in (1, 3, 8, audit.MAX_TEXT_LENGTH):
            assert audit.safe_text(value, limit) == _character_pass(value, limit), (value, limit)


def test_safe_text_returns_clean_text_unchanged_when_within_the_limit() -> None:
    assert audit.safe_text("txn_0123456789abcdef01234567") == "txn_0123456789abcdef01234567"
    assert audit.safe_text("abcd", limit=3) == "ab…"
