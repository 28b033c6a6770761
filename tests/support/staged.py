"""Run reconciliation's SQL steps on small inputs against the real PostgreSQL, each in a
transaction that is rolled back: the settlement adapters (COPY into `settlement_lines`)
and the matching rules (`matching.classify`)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.entrypoints.devstack import Stack
from app.platform.db import create_engine, session_factory
from app.providers.api import SETTLEMENT_LINES, SettlementLine, stage_settlement_file
from app.reconciliation import domain, matching

T = TypeVar("T")
ACME_HEADER = "settlement_date,line,type,charge_ids,operation_id,amount,fee,net,currency"
ACME_TYPES = {
    "capture": "CAPTURE",
    "refund": "REFUND",
    "payout": "PAYOUT",
    "fee": "FEE",
    "adjustment": "ADJUSTMENT",
}
# The shape payments' stage_settled gives its table.
SETTLED_TABLE = (
    "CREATE TEMPORARY TABLE settled_money (kind text, reference text, amount_minor bigint,"
    " currency text, at timestamptz, subject_id text) ON COMMIT DROP"
)


class Line(NamedTuple):
    """A settlement line as the rules see it (written into an acme file to be staged)."""

    line_number: int
    kind: str
    references: tuple[str, ...]
    operation_reference: str | None
    gross_minor: int
    fee_minor: int
    currency: str


class Record(NamedTuple):
    """One of our settled records (a row of payments' `settled_money`)."""

    reference: str
    kind: str
    amount_minor: int
    currency: str
    occurred_on: date


class Outcome(NamedTuple):
    line_class: str
    line_numbers: tuple[int, ...]
    references: tuple[str, ...]
    provider_gross_minor: int | None
    internal_minor: int | None
    currencies: tuple[str, ...]
    fee_minor: int


@dataclass
class Report:
    results: list[Outcome] = field(default_factory=list)
    pending_references: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, line_class: str) -> int:
        return self.counts.get(line_class, 0)

    @property
    def discrepancies(self) -> list[Outcome]:
        return [r for r in self.results if r.line_class in domain.DISCREPANCIES]


class Database:
    """One engine on its own event loop, for synchronous tests (hypothesis included)."""

    def __init__(self, url: str) -> None:
        self.runner = asyncio.Runner()
        self.engine = self.runner.run(self._engine(url))
        self.sessions = session_factory(self.engine)

    @staticmethod
    async def _engine(url: str) -> Any:
        return create_engine(url, pool_size=1)

    def close(self) -> None:
        self.runner.run(self.engine.dispose())
        self.runner.close()

    @classmethod
    @contextlib.contextmanager
    def of(cls, stack: Stack) -> Iterator[Database]:
        """A Database on `stack`'s PostgreSQL, closed when the block ends."""
        if stack.database_url is None:
            raise RuntimeError("the stack has no database")
        database = cls(stack.database_url)
        try:
            yield database
        finally:
            database.close()

    def rolled_back(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async def run() -> T:
            async with self.sessions() as session:
                transaction = await session.begin()
                try:
                    return await work(session)
                finally:
                    await transaction.rollback()

        return self.runner.run(run())

    def parse(self, provider: str, data: bytes) -> list[SettlementLine]:
        """The file's lines as the adapter stages them. Raises SettlementFileError."""

        async def work(session: AsyncSession) -> list[SettlementLine]:
            await stage_settlement_file(session, provider, data)
            return await staged_lines(session, provider)

        return self.rolled_back(work)

    def reconcile(
        self,
        lines: Sequence[Line],
        records: Sequence[Record],
        *,
        settlement_date: date,
        tolerances: domain.Tolerances,
    ) -> Report:
        """Every outcome (matches included) of the rules for these lines and records."""

        async def work(session: AsyncSession) -> Report:
            await stage_settlement_file(session, "acme", acme_file(lines, settlement_date))
            await session.execute(text(SETTLED_TABLE))
            if records:
                await session.execute(
                    text(
                        "INSERT INTO settled_money (kind, reference, amount_minor, currency, at,"
                        " subject_id) VALUES (:kind, :reference, :amount, :currency, :at, :id)"
                    ),
                    [
                        {
                            "kind": r.kind,
                            "reference": r.reference,
                            "amount": r.amount_minor,
                            "currency": r.currency,
                            "at": datetime.combine(r.occurred_on, time(12), tzinfo=UTC),
                            "id": f"sub_{n}",
                        }
                        for n, r in enumerate(records)
                    ],
                )
            counts = await matching.classify(
                session, settlement_date, tolerances, keep_matched=True
            )
            report = Report(counts=dict(counts))
            rows = await session.execute(
                text(
                    "SELECT line_class, line_numbers, refs, gross_minor, internal_minor,"
                    " currencies, fee_minor FROM recon_outcomes ORDER BY line_numbers, refs"
                )
            )
            for line_class, numbers, refs, gross, internal, currencies, fee in rows:
                if line_class == domain.PENDING:
                    report.pending_references.extend(refs)
                    continue
                report.results.append(
                    Outcome(
                        line_class,
                        tuple(numbers),
                        tuple(refs),
                        gross,
                        internal,
                        tuple(currencies),
                        fee,
                    )
                )
            return report

        return self.rolled_back(work)


def acme_file(lines: Sequence[Line], day: date) -> bytes:
    """An acme settlement file listing `lines` in order (numbered 2, 3, ... as files are)."""
    out = io.StringIO()
    out.write(ACME_HEADER + "\n")
    writer = csv.writer(out, lineterminator="\n")
    for expected, line in enumerate(lines, start=2):
        if line.line_number != expected:
            raise ValueError(
                f"lines are numbered as in the file: {expected}, not {line.line_number}"
            )
        writer.writerow(
            [
                day.isoformat(),
                line.line_number,
                ACME_TYPES[line.kind],
                "|".join(line.references),
                line.operation_reference or "",
                line.gross_minor,
                line.fee_minor,
                line.gross_minor - line.fee_minor,
                line.currency,
            ]
        )
    return out.getvalue().encode()


async def staged_lines(session: AsyncSession, provider: str) -> list[SettlementLine]:
    rows = await session.execute(
        text(
            "SELECT settlement_date, line_number, kind, ref, refs, op, gross_minor, fee_minor,"
            f" net_minor, currency FROM {SETTLEMENT_LINES} ORDER BY line_number"
        )
    )
    return [
        SettlementLine(
            provider,  # type: ignore[arg-type]
            day,
            number,
            kind,
            (ref,) if ref else tuple(refs or ()),
            op,
            gross,
            fee,
            net,
            currency,
        )
        for day, number, kind, ref, refs, op, gross, fee, net, currency in rows
    ]
