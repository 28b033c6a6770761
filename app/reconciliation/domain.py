"""The matching rules: provider settlement lines against our own records.

The rules run as one SQL statement (`matching`), where a run's million lines and records
already are; this module keeps their vocabulary and settings. Lines arrive normalised by
the provider's adapter (any format, integer minor units). The rules, in the order they
apply:

1. A line identical to one already seen in the file is a `duplicate` (the first copy is
   matched normally, the copies are flagged), whatever its kind.
2. Lines are grouped by what they settle: a line listing several references (fees netted
   against a batch: many to one) is one group with all of them; lines of the same type
   naming the same single reference (partial captures: one to many) form one group. A
   capture, refund or payout group settles our records of its kind and references; fees
   and adjustments settle nothing of ours.
3. A group none of whose references we know is `missing_internally`.
4. A group whose lines or records carry more than one currency is a `currency_mismatch`,
   never a match, whatever the amounts.
5. A group whose gross differs from our total by more than the amount tolerance is an
   `amount_mismatch`; within it, `matched`.
6. One of our records that no line names is `missing_at_provider` once it is at least the
   date tolerance old (younger ones may still settle in a later file: `pending`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.platform.errors import ValidationError

LineClass = Literal[
    "matched",
    "missing_internally",
    "missing_at_provider",
    "amount_mismatch",
    "currency_mismatch",
    "duplicate",
]
DISCREPANCIES: frozenset[str] = frozenset(
    {
        "missing_internally",
        "missing_at_provider",
        "amount_mismatch",
        "currency_mismatch",
        "duplicate",
    }
)
# Not a class of line: one of our records no file named yet, inside the date tolerance.
PENDING = "pending"
RecordKind = Literal["capture", "refund", "payout"]
# The settlement line kinds that settle a record of ours (of the same kind).
SETTLING_KINDS: frozenset[RecordKind] = frozenset({"capture", "refund", "payout"})
MAX_TOLERANCE_MINOR = 1_000_000
MAX_TOLERANCE_DAYS = 31


@dataclass(frozen=True, slots=True)
class Tolerances:
    """How far a match may be off and still count: in minor units, and in days."""

    amount_minor: int = 0
    days: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.amount_minor <= MAX_TOLERANCE_MINOR:
            raise ValidationError(f"amount tolerance must lie in [0, {MAX_TOLERANCE_MINOR}]")
        if not 0 <= self.days <= MAX_TOLERANCE_DAYS:
            raise ValidationError(f"date tolerance must lie in [0, {MAX_TOLERANCE_DAYS}] days")
