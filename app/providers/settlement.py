"""Each provider's daily settlement CSV, normalised into SettlementLine, streamed.

acme (comma-separated, integer minor units):
    settlement_date,line,type,charge_ids,operation_id,amount,fee,net,currency
    types CAPTURE, REFUND, PAYOUT, FEE, ADJUSTMENT; `charge_ids` is `|`-separated when a
    line nets several charges.
globex (semicolon-separated, decimal strings):
    ReportDate;RecordType;PaymentIds;ReferenceId;Currency;GrossAmount;Commission;NetAmount
    types Settled, Refunded, Transferred, Fee, Adjustment; `PaymentIds` space-separated.

The parser reads; it does not judge. Duplicates, unknown references and mismatches are
reconciliation's job, so they pass through untouched. What it refuses (SettlementFileError,
naming the line): a wrong header, a missing field, a malformed amount, negative amounts,
or net != gross - fee.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date

from app.providers.domain import (
    ProviderName,
    SettlementFileError,
    SettlementLine,
    SettlementRecordType,
    decimal_to_minor,
    exponent_of,
)

ACME_HEADER = [
    "settlement_date",
    "line",
    "type",
    "charge_ids",
    "operation_id",
    "amount",
    "fee",
    "net",
    "currency",
]
GLOBEX_HEADER = [
    "ReportDate",
    "RecordType",
    "PaymentIds",
    "ReferenceId",
    "Currency",
    "GrossAmount",
    "Commission",
    "NetAmount",
]
ACME_TYPES: dict[str, SettlementRecordType] = {
    "CAPTURE": "capture",
    "REFUND": "refund",
    "PAYOUT": "payout",
    "FEE": "fee",
    "ADJUSTMENT": "adjustment",
}
GLOBEX_TYPES: dict[str, SettlementRecordType] = {
    "Settled": "capture",
    "Refunded": "refund",
    "Transferred": "payout",
    "Fee": "fee",
    "Adjustment": "adjustment",
}
MAX_FIELD_CHARS = 4096
MAX_REFERENCES_PER_LINE = 10_000


def parse(provider: ProviderName, data: bytes) -> Iterator[SettlementLine]:
    try:
        text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")
        rows = csv.reader(text, delimiter="," if provider == "acme" else ";", strict=True)
        header = next(rows, None)
        expected = ACME_HEADER if provider == "acme" else GLOBEX_HEADER
        if header != expected:
            raise SettlementFileError(f"{provider} settlement header must be {','.join(expected)}")
        normalise = _Normaliser(provider)
        line = normalise.acme if provider == "acme" else normalise.globex
        for number, row in enumerate(rows, start=2):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            try:
                yield line(row, number)
            except (ValueError, KeyError) as error:
                raise SettlementFileError(f"{provider} settlement line {number}: {error}") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise SettlementFileError(f"{provider} settlement file unreadable: {error}") from None


def _fields(row: list[str], count: int) -> list[str]:
    if len(row) != count:
        raise ValueError(f"{len(row)} fields, expected {count}")
    if max(map(len, row)) > MAX_FIELD_CHARS:
        raise ValueError("a field is too long")
    return list(map(str.strip, row))


def _integer(text: str, what: str) -> int:
    if not text.isdigit():
        raise ValueError(f"{what} {text[:30]!r} is not a non-negative integer")
    return int(text)


def _references(text: str, separator: str | None) -> tuple[str, ...]:
    references = tuple(part for part in text.split(separator) if part)
    if len(references) > MAX_REFERENCES_PER_LINE:
        raise ValueError("too many references on one line")
    return references


class _Normaliser:
    """One file's lines into SettlementLine. Files run to a million lines, so the checks
    that repeat the same answer line after line (a day's date, a currency's code) are
    remembered per file, in bounded caches, and the tuple is built positionally."""

    _CACHE_ENTRIES = 64

    def __init__(self, provider: ProviderName) -> None:
        self.provider = provider
        self._days: dict[str, date] = {}
        self._currencies: set[str] = set()

    def _day(self, text: str) -> date:
        day = self._days.get(text)
        if day is None:
            day = date.fromisoformat(text)
            if len(self._days) < self._CACHE_ENTRIES:
                self._days[text] = day
        return day

    def _currency(self, currency: str) -> None:
        if currency not in self._currencies:
            exponent_of(currency)  # raises for a malformed code
            if len(self._currencies) < self._CACHE_ENTRIES:
                self._currencies.add(currency)

    def _line(
        self,
        settlement_date: str,
        number: int,
        record_type: SettlementRecordType,
        references: tuple[str, ...],
        operation: str,
        gross: int,
        fee: int,
        net: int,
        currency: str,
    ) -> SettlementLine:
        self._currency(currency)
        if net != gross - fee:
            raise ValueError(f"net {net} is not gross {gross} minus fee {fee}")
        if record_type != "fee" and not references:
            raise ValueError("no provider reference")
        return SettlementLine(
            self.provider,
            self._day(settlement_date),
            number,
            record_type,
            references,
            operation or None,
            gross,
            fee,
            net,
            currency,
        )

    def acme(self, row: list[str], number: int) -> SettlementLine:
        day, _line_no, kind, charges, operation, amount, fee, net, currency = _fields(row, 9)
        # One charge per line is the norm: no split, no generator.
        single = "|" not in charges and charges
        references = (charges,) if single else _references(charges, "|")
        return self._line(
            day,
            number,
            ACME_TYPES[kind],
            references,
            operation,
            _integer(amount, "amount"),
            _integer(fee, "fee"),
            _integer(net, "net"),
            currency,
        )

    def globex(self, row: list[str], number: int) -> SettlementLine:
        day, kind, payments, reference, currency, gross, commission, net = _fields(row, 8)
        return self._line(
            day,
            number,
            GLOBEX_TYPES[kind],
            _references(payments, None),
            reference,
            decimal_to_minor(gross, currency),
            decimal_to_minor(commission, currency),
            decimal_to_minor(net, currency),
            currency,
        )
