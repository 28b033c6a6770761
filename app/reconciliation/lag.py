"""Reconciliation lag: the age of the oldest provider transaction no run has reconciled.

A capture, refund or payout that settled at a provider is unreconciled while
- no run has covered it: its UTC day has no run, or the day's run started before it
  settled (an on-demand run for today freezes the day at its start); or
- the last run that saw it left it pending (no line named it yet, inside the date
  tolerance), until a later run names or flags it.

Transactions a run flagged (missing at the provider, amount or currency mismatch) are
reconciled in this sense, and counted as open discrepancies until someone resolves
them: the two gauges tell "the runs are behind" from "the runs found something".
The search looks back LOOKBACK_DAYS days, so the lag reads at most about that much.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.payments import api as payments_api

LOOKBACK_DAYS = 31
DAY = timedelta(days=1)


def _start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


async def oldest_unreconciled(
    session: AsyncSession, provider: str, *, now: datetime
) -> datetime | None:
    """When the oldest unreconciled transaction at `provider` settled, or None."""
    today = now.astimezone(UTC).date()
    first_day = today - timedelta(days=LOOKBACK_DAYS - 1)
    found: list[datetime] = []
    by_day = await payments_api.earliest_settled_by_day(
        session, provider, _start(first_day), _start(today) + DAY
    )
    rows = await session.execute(
        text(
            "SELECT settlement_date, started_at FROM reconciliation.runs"
            " WHERE provider = :provider AND settlement_date >= :first"
        ),
        {"provider": provider, "first": first_day},
    )
    started = {row.settlement_date: row.started_at for row in rows}
    for day, first_at in by_day.items():
        run_started = started.get(day)
        if run_started is None:
            found.append(first_at)
        elif run_started < _start(day) + DAY:
            # The day's run began before the day ended: what settled after it is not
            # covered by any run (a day is reconciled once).
            late = await payments_api.earliest_settled_by_day(
                session, provider, max(run_started, _start(day)), _start(day) + DAY
            )
            found.extend(late.values())
    waiting = await session.execute(
        text("SELECT min(settled_at) FROM reconciliation.pending_items WHERE provider = :p"),
        {"p": provider},
    )
    oldest_pending = waiting.scalar_one()
    if isinstance(oldest_pending, datetime):
        found.append(oldest_pending)
    return min(found) if found else None


async def lag_seconds(session: AsyncSession, provider: str, *, now: datetime) -> float:
    oldest = await oldest_unreconciled(session, provider, now=now)
    return 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())


async def open_discrepancies(session: AsyncSession, provider: str) -> int:
    row = await session.execute(
        text(
            "SELECT count(*) FROM reconciliation.exceptions"
            " WHERE provider = :provider AND status = 'open'"
        ),
        {"provider": provider},
    )
    return int(row.scalar_one())
