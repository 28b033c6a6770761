"""Each provider's daily settlement CSV, read by PostgreSQL's COPY into a temporary table.

acme (comma-separated, integer minor units):
    settlement_date,line,type,charge_ids,operation_id,amount,fee,net,currency
    types CAPTURE, REFUND, PAYOUT, FEE, ADJUSTMENT; `charge_ids` is `|`-separated when a
    line nets several charges.
globex (semicolon-separated, decimal strings):
    ReportDate;RecordType;PaymentIds;ReferenceId;Currency;GrossAmount;Commission;NetAmount
    types Settled, Refunded, Transferred, Fee, Adjustment; `PaymentIds` space-separated.

A file runs to a million lines, and reading it line by line in Python cost more than the
whole reconciliation around it. So each adapter is a table definition: its columns' types
and CHECK constraints are the format's rules, and COPY (CSV, the provider's delimiter,
HEADER MATCH) applies them in the server as it loads; a view derives the normalised
columns. What the table refuses (SettlementFileError, naming the line): a wrong header, a
missing or extra field, a blank line, a malformed amount (acme: an integer; globex: a
decimal with no more places than the currency's exponent), negative amounts,
net != gross - fee, an unknown type, a line other than a fee naming no reference, a
field over MAX_FIELD_CHARS bytes, a line of only `\\.`; once the file is loaded, a
malformed currency code (checked per distinct code, after_load_sql: so a file with other
faults too is refused for those first). Amounts
are read by PostgreSQL's bigint and numeric input (never a float), which also takes a sign
or surrounding blanks (`+5`, ` 5`) and, for globex, an exponent (`1e3`). Other fields are
taken as written (no trimming), except that globex splits its references on any run of
whitespace; a byte order mark and trailing blank lines are ignored.

The parser reads; it does not judge. Duplicates, unknown references and mismatches are
reconciliation's job, so they pass through untouched. The result is the view
SETTLEMENT_LINES, one row per line in the shape of `SettlementLine` except the references:
`ref` holds the line's reference when it names exactly one (else ''), `refs` its
references when it names several (else NULL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.providers.domain import (
    CURRENCY_PATTERN,
    DEFAULT_EXPONENT,
    EXPONENTS,
    ProviderName,
    SettlementFileError,
    SettlementRecordType,
)

SETTLEMENT_LINES = "settlement_lines"
_TABLE = "settlement_file"
ACME_HEADER = (
    "settlement_date",
    "line",
    "type",
    "charge_ids",
    "operation_id",
    "amount",
    "fee",
    "net",
    "currency",
)
GLOBEX_HEADER = (
    "ReportDate",
    "RecordType",
    "PaymentIds",
    "ReferenceId",
    "Currency",
    "GrossAmount",
    "Commission",
    "NetAmount",
)
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
COPY_CHUNK_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"
# What each CHECK constraint means, for the error that names the line.
CHECKS = {
    "amount_scale": "an amount has more decimals than its currency allows",
    "amounts_in_range": "amounts must be non-negative and below 10^18",
    "currency_code": "currency is not three upper-case letters",
    "field_length": f"a field is longer than {MAX_FIELD_CHARS} bytes",
    "known_type": "unknown record type",
    "net_is_gross_minus_fee": "net is not gross minus fee",
    "reference_present": "no provider reference",
    "references_bounded": f"more than {MAX_REFERENCES_PER_LINE} references on one line",
}


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class SettlementFormat:
    """One provider's file as a table: its header, its CSV delimiter, the SQL of its
    typed columns, and the SQL of each normalised column the view shows."""

    header: tuple[str, ...]
    delimiter: str
    columns: tuple[str, ...]  # one definition per header field, in order
    types: dict[str, SettlementRecordType]
    type_column: str
    references_column: str
    separator: str  # what separates references: a string, or a regular expression
    separator_is_pattern: bool
    operation_column: str
    amounts: tuple[str, str, str]  # gross, fee, net columns
    currency_column: str
    decimal: bool  # amounts are decimal strings (else integer minor units)

    def _kind(self) -> str:
        cases = " ".join(
            f"WHEN {_quote(raw)} THEN {_quote(kind)}" for raw, kind in self.types.items()
        )
        return f"CASE {_ident(self.type_column)} {cases} END"

    def _exponent(self) -> str:
        by_exponent: dict[int, list[str]] = {}
        for code, exponent in EXPONENTS.items():
            by_exponent.setdefault(exponent, []).append(_quote(code))
        currency = _ident(self.currency_column)
        cases = " ".join(
            f"WHEN {currency} IN ({', '.join(codes)}) THEN {exponent}"
            for exponent, codes in sorted(by_exponent.items())
        )
        return f"CASE {cases} ELSE {DEFAULT_EXPONENT} END"

    def _minor(self, column: str) -> str:
        if not self.decimal:
            return _ident(column)
        return f"({_ident(column)} * power(10::numeric, {self._exponent()}))::bigint"

    def _references(self) -> tuple[str, str, str]:
        """SQL for: the line's references as an array, whether it splits, its single one."""
        refs, separator = _ident(self.references_column), _quote(self.separator)
        if self.separator_is_pattern:
            parts = f"array_remove(regexp_split_to_array({refs}, {separator}), '')"
            splits = f"{refs} ~ {separator}"
        else:  # a plain search: cheaper than a regular expression, per line
            parts = f"array_remove(string_to_array({refs}, {separator}), '')"
            splits = f"strpos({refs}, {separator}) > 0"
        return parts, splits, refs

    def table_sql(self) -> str:
        parts, splits, refs = self._references()
        fee_types = ", ".join(_quote(raw) for raw, kind in self.types.items() if kind == "fee")
        kind = _ident(self.type_column)
        gross, fee, net = (_ident(column) for column in self.amounts)
        texts = [n for n, d in zip(self.header, self.columns, strict=True) if " text" in d]
        fields = ", ".join(f"octet_length({_ident(name)})" for name in texts)
        top = 10**18
        known = ", ".join(_quote(raw) for raw in self.types)
        checks = [
            f"CONSTRAINT known_type CHECK ({kind} IN ({known}))",
            f"CONSTRAINT amounts_in_range CHECK ({gross} >= 0 AND {fee} >= 0 AND {net} >= 0"
            f" AND {gross} < {top} AND {fee} < {top} AND {net} < {top})",
            f"CONSTRAINT net_is_gross_minus_fee CHECK ({net} = {gross} - {fee})",
            f"CONSTRAINT reference_present CHECK ({kind} IN ({fee_types})"
            f" OR coalesce({refs} <> '' AND (NOT {splits} OR cardinality({parts}) > 0), false))",
            f"CONSTRAINT references_bounded CHECK (NOT {splits}"
            f" OR cardinality({parts}) <= {MAX_REFERENCES_PER_LINE})",
            f"CONSTRAINT field_length CHECK (greatest({fields}) <= {MAX_FIELD_CHARS})",
        ]
        generated = []
        if self.decimal:
            exponent = self._exponent()
            checks.append(
                f"CONSTRAINT amount_scale CHECK (scale({gross}) <= {exponent}"
                f" AND scale({fee}) <= {exponent} AND scale({net}) <= {exponent})"
            )
            # Converted as the file loads, so an amount too large for minor units is
            # refused with its line, not later.
            generated = [
                f"{name} bigint GENERATED ALWAYS AS ({self._minor(column)}) STORED"
                for name, column in zip(
                    ("gross_minor", "fee_minor", "net_minor"), self.amounts, strict=True
                )
            ]
        # The identity numbers the lines as the file does: the header is line 1. One
        # session draws them all, so a cache keeps them consecutive and spares the
        # sequence a visit per line (a tenth of the load's time). The table holds the
        # fields as written (every extra stored column costs the load a second pass over
        # each row); the view derives the rest.
        body = ", ".join(
            [
                "line_number integer GENERATED ALWAYS AS IDENTITY (START WITH 2 CACHE 10000)",
                *self.columns,
                *generated,
                *checks,
            ]
        )
        return f"CREATE TEMPORARY TABLE {_TABLE} ({body}) ON COMMIT DROP"

    def after_load_sql(self) -> str:
        """One pass over the loaded lines: whether any line splits its references (the
        view then needs the splitting columns), and the first line whose currency is not
        a code. Currencies are checked here, once per distinct value, rather than by a
        CHECK on each line: a regular expression per line cost an eighth of the load."""
        _, splits, _ = self._references()
        currency = _ident(self.currency_column)
        return (
            "SELECT coalesce(bool_or(splitting), false),"  # noqa: S608 - fixed names
            f" min(first_line) FILTER (WHERE NOT currency ~ {_quote(CURRENCY_PATTERN)})"
            f" FROM (SELECT {currency} AS currency, bool_or({splits}) AS splitting,"
            f" min(line_number) AS first_line FROM {_TABLE} GROUP BY {currency}) AS found"
        )

    def view_sql(self, *, splitting: bool) -> str:
        parts, splits, refs = self._references()
        # One reference (the usual line) is shown as plain text, several as an array: the
        # matching groups a million single references by a text, not an array. A file in
        # which no line splits (splitting_sql) gets the plain columns: no per-line search
        # when the view is read, and `refs` is NULL as a constant, so the planner drops
        # the matching's scan for lines naming several references.
        if splitting:
            single = (
                f"CASE WHEN NOT {splits} THEN coalesce({refs}, '')"
                f" WHEN cardinality({parts}) = 1 THEN ({parts})[1] ELSE '' END"
            )
            several = f"CASE WHEN {splits} AND cardinality({parts}) > 1 THEN {parts} END"
        else:
            single, several = f"coalesce({refs}, '')", "NULL::text[]"
        amounts = (
            ("gross_minor", "fee_minor", "net_minor")
            if self.decimal
            else tuple(
                f"{_ident(column)} AS {name}"
                for column, name in zip(
                    self.amounts, ("gross_minor", "fee_minor", "net_minor"), strict=True
                )
            )
        )
        return (
            f"CREATE TEMPORARY VIEW {SETTLEMENT_LINES} AS SELECT line_number,"  # noqa: S608
            f" {_ident(self.header[0])} AS settlement_date, {self._kind()} AS kind,"
            f" {single} AS ref, {several} AS refs,"
            f" nullif({_ident(self.operation_column)}, '') AS op, {', '.join(amounts)},"
            f" {_ident(self.currency_column)} AS currency FROM {_TABLE}"
        )

    def copy_sql(self) -> str:
        columns = ", ".join(_ident(name) for name in self.header)
        return (
            f"COPY {_TABLE} ({columns}) FROM STDIN"
            f" WITH (FORMAT csv, DELIMITER {_quote(self.delimiter)}, HEADER MATCH)"
        )


FORMATS: dict[ProviderName, SettlementFormat] = {
    "acme": SettlementFormat(
        header=ACME_HEADER,
        delimiter=",",
        columns=(
            "settlement_date date NOT NULL",
            "line text",
            "type text NOT NULL",
            "charge_ids text",
            "operation_id text",
            "amount bigint NOT NULL",
            "fee bigint NOT NULL",
            "net bigint NOT NULL",
            "currency text NOT NULL",
        ),
        types=ACME_TYPES,
        type_column="type",
        references_column="charge_ids",
        separator="|",
        separator_is_pattern=False,
        operation_column="operation_id",
        amounts=("amount", "fee", "net"),
        currency_column="currency",
        decimal=False,
    ),
    "globex": SettlementFormat(
        header=GLOBEX_HEADER,
        delimiter=";",
        columns=(
            '"ReportDate" date NOT NULL',
            '"RecordType" text NOT NULL',
            '"PaymentIds" text',
            '"ReferenceId" text',
            '"Currency" text NOT NULL',
            '"GrossAmount" numeric NOT NULL',
            '"Commission" numeric NOT NULL',
            '"NetAmount" numeric NOT NULL',
        ),
        types=GLOBEX_TYPES,
        type_column="RecordType",
        references_column="PaymentIds",
        separator="[[:space:]]+",
        separator_is_pattern=True,
        operation_column="ReferenceId",
        amounts=("GrossAmount", "Commission", "NetAmount"),
        currency_column="Currency",
        decimal=True,
    ),
}


def _body(provider: ProviderName, data: bytes) -> memoryview:
    """The bytes COPY reads: without a UTF-8 byte order mark or trailing blank lines."""
    view = memoryview(data)
    start = len(_BOM) if data.startswith(_BOM) else 0
    end = len(data)
    while end > start and data[end - 1] in b" \t\r\n":
        end -= 1
    if end == start:
        header = ",".join(FORMATS[provider].header)
        raise SettlementFileError(f"{provider} settlement header must be {header}")
    # COPY ends its input at a line holding only `\.` and ignores the rest: refuse such a
    # line rather than reconcile half a file.
    found = data.find(b"\\.", start, end)
    while found != -1:
        before = data[found - 1 : found] if found > start else b"\n"
        after = data[found + 2 : found + 4]
        if before == b"\n" and (found + 2 == end or after[:1] == b"\n" or after == b"\r\n"):
            line = data.count(b"\n", start, found) + 1
            raise SettlementFileError(f"{provider} settlement line {line}: a line of only \\.")
        found = data.find(b"\\.", found + 2, end)
    return view[start:end]


_LINE = re.compile(r"\bline (\d+)")


def _file_error(provider: ProviderName, error: psycopg.Error) -> SettlementFileError | None:
    """The SettlementFileError a refused COPY means, or None when the error is not about
    the file (a lost connection, a timeout)."""
    state = error.sqlstate or ""
    if not state.startswith(("22", "23")):
        return None
    diag = error.diag
    found = _LINE.search(diag.context or "")
    if found is None:
        return SettlementFileError(f"{provider} settlement file unreadable: {diag.message_primary}")
    line = int(found.group(1))
    if line == 1:
        header = ",".join(FORMATS[provider].header)
        return SettlementFileError(f"{provider} settlement header must be {header}")
    if diag.constraint_name in CHECKS:
        reason = CHECKS[diag.constraint_name]
    elif state == "23502":
        reason = f"{diag.column_name} is missing"
    else:
        reason = (diag.message_primary or "unreadable")[:200]
    return SettlementFileError(f"{provider} settlement line {line}: {reason}")


async def stage(session: AsyncSession, provider: ProviderName, data: bytes) -> int:
    """Load `data` into the view SETTLEMENT_LINES (dropped at the end of the transaction);
    returns the number of lines. Raises SettlementFileError naming the first bad line (the
    first with a malformed currency when that is the file's only fault); the caller then
    rolls back."""
    settlement_format = FORMATS[provider]
    body = _body(provider, data)
    await session.execute(text(f"DROP TABLE IF EXISTS pg_temp.{_TABLE} CASCADE"))
    await session.execute(text(settlement_format.table_sql()))
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    try:
        async with driver.cursor() as cursor:
            async with cursor.copy(settlement_format.copy_sql()) as copy:
                for start in range(0, len(body), COPY_CHUNK_BYTES):
                    await copy.write(body[start : start + COPY_CHUNK_BYTES])
            count = int(cursor.rowcount)
    except psycopg.Error as error:
        refused = _file_error(provider, error)
        if refused is None:
            raise
        raise refused from None
    found = (await session.execute(text(settlement_format.after_load_sql()))).one()
    splitting, bad_currency_line = bool(found[0]), found[1]
    if bad_currency_line is not None:
        raise SettlementFileError(
            f"{provider} settlement line {bad_currency_line}: {CHECKS['currency_code']}"
        )
    await session.execute(text(settlement_format.view_sql(splitting=splitting)))
    # No ANALYZE: the matching reads the whole table once, by a plan its size decides (the
    # statistics cost a tenth of the load and changed no plan).
    return count
