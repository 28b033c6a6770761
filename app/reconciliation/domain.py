"""Pure matching rules: provider settlement lines against our own records.

No I/O: the service feeds it normalised lines (any provider's format, already in integer
minor units) and the internal records that could settle on that day, and gets back one
classification per group. The rules, in the order they apply:

1. A line identical to one already seen in the file is a `duplicate` (the first copy is
   matched normally, the copies are flagged).
2. Lines are grouped by what they settle: a line listing several references (fees netted
   against a batch: many to one) is one group with all of them; lines of the same type
   naming the same single reference (partial captures: one to many) form one group.
3. A group none of whose references we know is `missing_internally`.
4. A group whose lines or records carry more than one currency is a `currency_mismatch`,
   never a match, whatever the amounts.
5. A group whose gross differs from our total by more than the amount tolerance is an
   `amount_mismatch`; within it, `matched`.
6. One of our records that no line names is `missing_at_provider` once it is at least the
   date tolerance old (younger ones may still settle in a later file: `pending`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal, NamedTuple

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
RecordKind = Literal["capture", "refund", "payout"]
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


# Lines and records are named tuples, not dataclasses: a run makes a million of each, and a
# tuple is built several times faster than a frozen dataclass, and is as immutable.
class ProviderLine(NamedTuple):
    """One settlement line, normalised: amounts positive minor units, direction by kind."""

    line_number: int
    kind: str  # capture, refund, payout, fee, adjustment
    references: tuple[str, ...]
    operation_reference: str | None
    gross_minor: int
    fee_minor: int
    currency: str

    def identity(self) -> tuple[object, ...]:
        """What makes two lines the same line (the line number is where, not what)."""
        return self[1:]


class InternalRecord(NamedTuple):
    """Money we moved through the provider: a capture, refund or payout, by its reference."""

    reference: str  # the provider's id for it (charge id, refund or payout id)
    kind: RecordKind
    amount_minor: int
    currency: str
    occurred_on: date
    payment_id: str | None = None
    occurred_at: datetime | None = None  # the moment, when known (aware UTC)


class Classified(NamedTuple):
    """One outcome: the lines and records it covers, and by how much it is off."""

    line_class: LineClass
    line_numbers: tuple[int, ...]
    references: tuple[str, ...]
    provider_gross_minor: int | None
    internal_minor: int | None
    currencies: tuple[str, ...]
    fee_minor: int = 0

    @property
    def is_discrepancy(self) -> bool:
        return self.line_class in DISCREPANCIES


@dataclass(slots=True)
class Report:
    """The outcomes of one run. With `keep_matched=False` matched groups are only counted
    (a run of a million clean lines needs their number, not a million objects)."""

    results: list[Classified] = field(default_factory=list)
    # Records no line named yet, younger than the date tolerance: a later file may list them.
    pending: list[InternalRecord] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    keep_matched: bool = True

    def add(self, result: Classified) -> None:
        self.counts[result.line_class] += 1
        if self.keep_matched or result.line_class != "matched":
            self.results.append(result)

    @property
    def pending_references(self) -> list[str]:
        return [record.reference for record in self.pending]

    def count(self, line_class: LineClass) -> int:
        return self.counts[line_class]

    @property
    def discrepancies(self) -> list[Classified]:
        return [result for result in self.results if result.is_discrepancy]


# Settlement types that move money we record, and the internal kind each one settles.
SETTLES: dict[str, RecordKind] = {"capture": "capture", "refund": "refund", "payout": "payout"}


def reconcile(
    lines: Iterable[ProviderLine],
    records: Sequence[InternalRecord],
    *,
    settlement_date: date,
    tolerances: Tolerances,
    keep_matched: bool = True,
) -> Report:
    """Classify every line of one provider's file for one day against our records, all
    in memory. (A run streams the same two steps, `classify_group` per group and
    `classify_unnamed` per record no line names, from the database instead.)"""
    report = Report(keep_matched=keep_matched)
    by_reference: dict[tuple[RecordKind, str], list[InternalRecord]] = defaultdict(list)
    for record in records:
        by_reference[(record.kind, record.reference)].append(record)
    groups: dict[tuple[str, tuple[str, ...]], list[ProviderLine]] = defaultdict(list)
    for line in lines:
        groups[(line.kind, line.references)].append(line)
    named: set[tuple[RecordKind, str]] = set()
    for (kind, references), group in groups.items():
        keys = named_keys(kind, references)
        named.update(keys)
        known = [record for key in keys for record in by_reference.get(key, ())]
        classify_group(report, group, known, tolerances)
    for key, kept in by_reference.items():
        if key not in named:
            for record in kept:
                classify_unnamed(report, record, settlement_date, tolerances)
    return report


def named_keys(kind: str, references: tuple[str, ...]) -> list[tuple[RecordKind, str]]:
    """The records a group of lines settles: (record kind, reference) for each reference
    of a settling kind; none for fees and adjustments."""
    settles = SETTLES.get(kind)
    return [] if settles is None else [(settles, reference) for reference in references]


def classify_group(
    report: Report,
    group: Sequence[ProviderLine],
    known: Sequence[InternalRecord],
    tolerances: Tolerances,
) -> None:
    """One group: the lines of one kind naming the same references, in file order, and
    the records those references name. A line identical to an earlier one is a
    `duplicate` (identical lines always share kind and references, so always a group);
    the others are classified together, when they settle money of ours."""
    seen: set[tuple[object, ...]] = set()
    unique: list[ProviderLine] = []
    for line in group:
        identity = line[1:]  # ProviderLine.identity(), inlined: this runs per line
        if identity in seen:
            report.add(
                Classified(
                    "duplicate",
                    (line.line_number,),
                    line.references,
                    line.gross_minor,
                    None,
                    (line.currency,),
                    line.fee_minor,
                )
            )
            continue
        seen.add(identity)
        unique.append(line)
    first = unique[0]
    if first.kind in SETTLES:  # fees and adjustments on their own settle nothing of ours
        report.add(_classify(unique, first.references, known, tolerances))


def classify_unnamed(
    report: Report, record: InternalRecord, settlement_date: date, tolerances: Tolerances
) -> None:
    """One of our records no line names: missing at the provider once it is at least the
    date tolerance old, else pending (a later file may list it)."""
    if (settlement_date - record.occurred_on).days >= tolerances.days:
        report.add(
            Classified(
                "missing_at_provider",
                (),
                (record.reference,),
                None,
                record.amount_minor,
                (record.currency,),
            )
        )
    else:
        report.pending.append(record)


def _classify(
    group: Sequence[ProviderLine],
    references: tuple[str, ...],
    known: Sequence[InternalRecord],
    tolerances: Tolerances,
) -> Classified:
    if len(group) == 1 and len(known) == 1:
        # The common case (one line, one record), the same rules without the folding.
        line, record = group[0], known[0]
        if line.currency == record.currency:
            gap = abs(line.gross_minor - record.amount_minor)
            return Classified(
                "matched" if gap <= tolerances.amount_minor else "amount_mismatch",
                (line.line_number,),
                references,
                line.gross_minor,
                record.amount_minor,
                (line.currency,),
                line.fee_minor,
            )
    gross = sum(line.gross_minor for line in group)
    fee = sum(line.fee_minor for line in group)
    numbers = tuple(line.line_number for line in group)
    currencies = sorted({line.currency for line in group} | {r.currency for r in known})
    if not known:
        return Classified(
            "missing_internally", numbers, references, gross, None, tuple(currencies), fee
        )
    internal = sum(record.amount_minor for record in known)
    if len(currencies) > 1:
        line_class: LineClass = "currency_mismatch"
    elif abs(gross - internal) > tolerances.amount_minor:
        line_class = "amount_mismatch"
    else:
        line_class = "matched"
    return Classified(line_class, numbers, references, gross, internal, tuple(currencies), fee)
