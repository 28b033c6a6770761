"""A run's data in temporary tables, for `matching` to join in SQL.

A file of a million lines and a day of a million payments do not fit in memory as Python
objects (2 GiB measured), and Python was the slow side of the join. So a run:

1. has the provider's adapter load the file into the view `settlement_lines` (COPY, in
   the server: no line passes through Python);
2. has payments leave the day's settled records in `settled_money` (stage_settled) and
   drops those an earlier run already settled (the date tolerance's rule, `pending`).

All temporary tables are dropped at the end of the transaction.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.payments import api as payments_api
from app.platform.errors import ValidationError
from app.providers import api as providers_api

# A run's loads, sorts and joins over a million rows outlast the connections' 15 s
# statement timeout meant for requests; a run's own statements get this bound instead.
STATEMENT_TIMEOUT_MS = 300_000
MAX_LINES = 2_000_000
_HOLDS_RUN_BUFFERS = "reconciliation_run_buffers"  # a pooled connection's mark
_SETTLED = payments_api.SETTLED_TABLE


async def stage_lines(
    session: AsyncSession, provider: str, data: bytes, *, work_mem_mb: int
) -> int:
    """Load `data` through the provider's adapter into `settlement_lines`; returns the
    number of lines. The transaction's sorts and hashes get `work_mem_mb` MiB each (a
    checked setting: runs.work_mem_mb_from_env). Raises SettlementFileError or
    ValidationError (nothing is kept then: the caller's transaction rolls back)."""
    await session.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
    await session.execute(text(f"SET LOCAL work_mem = '{int(work_mem_mb)}MB'"))
    if await _claim_temp_buffers(session, work_mem_mb):
        await _close_when_returned(session)
    # A file that does not parse raises SettlementFileError (422 invalid_settlement_file).
    count = await providers_api.stage_settlement_file(session, provider, data)
    if count > MAX_LINES:
        raise ValidationError(f"a settlement file has at most {MAX_LINES} lines")
    return count


async def _claim_temp_buffers(session: AsyncSession, work_mem_mb: int) -> bool:
    """Let the run's temporary tables (a million lines and records: about 200 MB) stay in
    this session's memory, up to `work_mem_mb` MiB. With PostgreSQL's default 8 MB every
    page of them went through the kernel on each write and each scan: a fifth of a run.

    PostgreSQL takes the setting only before the session's first temporary table, so it
    is set only in a session that has none yet (returns whether it was). The session
    keeps that memory until it ends: see _close_when_returned."""
    claimed = await session.execute(
        text("SELECT set_config('temp_buffers', :size, true) WHERE pg_my_temp_schema() = 0"),
        {"size": f"{int(work_mem_mb)}MB"},
    )
    return claimed.first() is not None


async def _close_when_returned(session: AsyncSession) -> None:
    """Have the pool close the session's connection when the transaction hands it back,
    instead of lending the run's buffers to unrelated requests. (Not `detach()`: an
    asyncio pool leaves a detached psycopg connection open.)"""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    raw.info[_HOLDS_RUN_BUFFERS] = True
    pool = connection.sync_engine.pool
    if not event.contains(pool, "checkin", _close_if_marked):
        event.listen(pool, "checkin", _close_if_marked)


def _close_if_marked(dbapi_connection: Any, record: Any) -> None:
    if record is not None and record.info.pop(_HOLDS_RUN_BUFFERS, False):
        record.invalidate()  # the pool opens a new connection in its place when needed


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
