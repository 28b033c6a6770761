"""A run's data in temporary tables, joined in SQL, streamed back group by group.

A file of a million lines and a day of a million payments do not fit in memory as Python
objects (2 GiB measured), and Python is the slow side of the join. So a run:

1. parses the file through the provider's adapter in chunks and COPYs each chunk into
   `recon_lines` (bounded: one chunk in memory);
2. has payments leave the day's settled records in `settled_money` (stage_settled) and
   drops those an earlier run already settled (the date tolerance's rule, `pending`);
3. lets PostgreSQL pair every group of lines (kind, references) with the records its
   references name (`recon_named`: which records each group settles, from domain.SETTLES)
   and stream the lines ordered by group, each with its group's records;
4. streams the records no line names.

The join only says which records a group names; every classification (duplicates,
missing, amounts, currencies, tolerances) stays in `domain`. All temporary tables are
dropped at the end of the transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.payments import api as payments_api
from app.platform.errors import ValidationError
from app.providers import api as providers_api
from app.reconciliation import domain

CHUNK_LINES = 20_000
STREAM_ROWS = 10_000
# A run's sorts and joins over a million rows outlast the connections' 15 s statement
# timeout meant for requests; a run's own statements get this bound instead.
STATEMENT_TIMEOUT_MS = 300_000
MAX_LINES = 2_000_000
_SETTLED = payments_api.SETTLED_TABLE
_NULL = "\\N"  # COPY's text format for SQL NULL
_LINE_COLUMNS = ("line_number", "kind", "refs", "op", "gross", "fee", "currency")


async def _driver(session: AsyncSession) -> Any:
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection


async def stage_lines(session: AsyncSession, provider: str, data: bytes) -> int:
    """Parse `data` through the provider's adapter into `recon_lines`; returns the number
    of lines. Raises SettlementFileError or ValidationError (nothing is kept then: the
    caller's transaction rolls back)."""
    await session.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
    await session.execute(text("DROP TABLE IF EXISTS pg_temp.recon_lines"))
    await session.execute(
        text(
            "CREATE TEMPORARY TABLE recon_lines (line_number integer NOT NULL,"
            " kind text NOT NULL, refs text[] NOT NULL, op text, gross bigint NOT NULL,"
            " fee bigint NOT NULL, currency text NOT NULL) ON COMMIT DROP"
        )
    )
    driver = await _driver(session)
    count = 0
    chunk: list[str] = []
    # A COPY per chunk: one COPY over the whole parse would be one statement as long as
    # the parse, and the connection's statement timeout would cancel it.
    copy_sql = f"COPY recon_lines ({', '.join(_LINE_COLUMNS)}) FROM STDIN"

    async def flush() -> None:
        async with driver.cursor() as cursor, cursor.copy(copy_sql) as copy:
            await copy.write("".join(chunk).encode())
        chunk.clear()

    # A file that does not parse raises SettlementFileError (422 invalid_settlement_file).
    for line in providers_api.parse_settlement_file(provider, data):
        count += 1
        if count > MAX_LINES:
            raise ValidationError(f"a settlement file has at most {MAX_LINES} lines")
        if line.gross_minor < 0 or line.fee_minor < 0:
            raise ValidationError(f"settlement line {line.line_number} has a negative amount")
        chunk.append(_copy_row(line))
        if len(chunk) >= CHUNK_LINES:
            await flush()
    if chunk:
        await flush()
    await session.execute(text("ANALYZE recon_lines"))
    return count


def _copy_field(value: str) -> str:
    # COPY's text format: a backslash, tab, newline or carriage return is escaped.
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = value.replace("\\", "\\\\").replace("\t", "\\t")
        value = value.replace("\n", "\\n").replace("\r", "\\r")
    return value


def _array(references: tuple[str, ...]) -> str:
    # A text[] literal, every element quoted (a reference may hold commas or braces).
    quoted = (
        '"' + reference.replace("\\", "\\\\").replace('"', '\\"') + '"' for reference in references
    )
    return "{" + ",".join(quoted) + "}"


def _copy_row(line: providers_api.SettlementLine) -> str:
    """One line as a row of COPY's text format (writing rows one by one through the
    driver's adapters costs several times more per line)."""
    operation = _NULL if line.operation_reference is None else line.operation_reference
    return (
        f"{line.line_number}\t{_copy_field(line.record_type)}"
        f"\t{_copy_field(_array(line.provider_references))}"
        f"\t{_copy_field(operation) if operation is not _NULL else _NULL}"
        f"\t{line.gross_minor}\t{line.fee_minor}\t{_copy_field(line.currency)}\n"
    )


def _window(first_day: date, last_day: date) -> dict[str, datetime]:
    since = datetime.combine(first_day, time.min, tzinfo=UTC)
    until = datetime.combine(last_day, time.min, tzinfo=UTC) + timedelta(days=1)
    return {"since": since, "until": until}


async def stage_records(
    session: AsyncSession, provider: str, settlement_date: date, days: int
) -> None:
    """The records this run matches against, in `settled_money`: the day's, plus those of
    the `days` days before that an earlier run left pending or no run has looked at."""
    first_day = settlement_date - timedelta(days=days)
    await payments_api.stage_settled(session, provider, first_day, settlement_date)
    if days > 0:
        await session.execute(
            text(
                f"DELETE FROM {_SETTLED} s"  # noqa: S608 - fixed table names
                " WHERE (s.at AT TIME ZONE 'UTC')::date < :day"
                " AND EXISTS (SELECT 1 FROM reconciliation.runs r WHERE r.provider = :provider"
                "  AND r.settlement_date = (s.at AT TIME ZONE 'UTC')::date)"
                " AND NOT EXISTS (SELECT 1 FROM reconciliation.pending_items p"
                "  WHERE p.provider = :provider AND p.kind = s.kind"
                "  AND p.reference = s.reference AND p.settled_at >= :since"
                "  AND p.settled_at < :until)"
            ),
            {"provider": provider, "day": settlement_date, **_window(first_day, settlement_date)},
        )
    # Which records each group of lines names: domain.named_keys, as a table.
    await session.execute(text("DROP TABLE IF EXISTS pg_temp.recon_named"))
    await session.execute(
        text(
            "CREATE TEMPORARY TABLE recon_named ON COMMIT DROP AS"
            " SELECT DISTINCT l.kind, l.refs, m.record_kind, unnest(l.refs) AS reference"
            " FROM recon_lines l"
            " JOIN unnest(CAST(:line_kinds AS text[]), CAST(:record_kinds AS text[]))"
            "  AS m (line_kind, record_kind) ON m.line_kind = l.kind"
        ),
        {
            "line_kinds": list(domain.SETTLES),
            "record_kinds": list(domain.SETTLES.values()),
        },
    )
    await session.execute(text("ANALYZE recon_named"))


# Lines, then the records their group names, ordered by group: one row each (arrays of
# records would be parsed far more slowly by the driver than plain rows).
_GROUPS_SQL = f"""
SELECT l.kind, l.refs, 0 AS part, l.line_number, l.op, l.gross, l.fee, l.currency,
       NULL::text AS reference, NULL::text AS record_kind, NULL::timestamptz AS at,
       NULL::text AS subject_id
  FROM recon_lines l
UNION ALL
SELECT n.kind, n.refs, 1, NULL, NULL, NULL, s.amount_minor, s.currency, s.reference, s.kind,
       s.at, s.subject_id
  FROM recon_named n JOIN {_SETTLED} s ON s.kind = n.record_kind AND s.reference = n.reference
 ORDER BY 1, 2, 3, 4
"""  # noqa: S608 - fixed table names


async def _fetch(session: AsyncSession, name: str, sql: str) -> AsyncIterator[list[Any]]:
    # The driver's own server-side cursor, in pages of plain tuples: bounded memory, and
    # none of the per-row cost of the ORM's result objects.
    driver = await _driver(session)
    # A cursor is planned for its first 10 % of rows by default (nested loops over the
    # unindexed temporary tables); this one is read to the end.
    await session.execute(text("SET LOCAL cursor_tuple_fraction = 1.0"))
    async with driver.cursor(name=name, binary=True) as cursor:
        await cursor.execute(sql)
        while page := await cursor.fetchmany(STREAM_ROWS):
            yield page


async def groups(
    session: AsyncSession,
) -> AsyncIterator[tuple[list[domain.ProviderLine], list[domain.InternalRecord]]]:
    """Each group of lines (file order) with the records its references name."""
    key: tuple[str, list[str]] | None = None
    lines: list[domain.ProviderLine] = []
    known: list[domain.InternalRecord] = []
    line = domain.ProviderLine
    record = domain.InternalRecord
    async for page in _fetch(session, "recon_groups", _GROUPS_SQL):
        for row in page:
            kind, refs, part, number, operation, gross, amount, currency = row[:8]
            if key is None or kind != key[0] or refs != key[1]:
                if lines:
                    yield lines, known
                key, lines, known = (kind, refs), [], []
            if part == 0:
                lines.append(line(number, kind, tuple(refs), operation, gross, amount, currency))
            else:
                reference, record_kind, at, subject = row[8:]
                moment = at.astimezone(UTC)
                known.append(
                    record(reference, record_kind, amount, currency, moment.date(), subject, moment)
                )
    if lines:
        yield lines, known


_UNNAMED_SQL = f"""
SELECT s.reference, s.kind, s.amount_minor, s.currency, s.at, s.subject_id
  FROM {_SETTLED} s
 WHERE NOT EXISTS (SELECT 1 FROM recon_named n
                    WHERE n.record_kind = s.kind AND n.reference = s.reference)
"""  # noqa: S608 - fixed table names


async def unnamed(session: AsyncSession) -> AsyncIterator[domain.InternalRecord]:
    """The staged records no line names."""
    record = domain.InternalRecord
    async for page in _fetch(session, "recon_unnamed", _UNNAMED_SQL):
        for reference, kind, amount, currency, at, subject in page:
            moment = at.astimezone(UTC)
            yield record(reference, kind, amount, currency, moment.date(), subject, moment)
