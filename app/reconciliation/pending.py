"""Records a run saw but no line named yet, and what the next runs look at again.

With a date tolerance of N days, a run for day D matches the provider's file against the
records of D and of the N days before. A record of those earlier days that its own day's
run already settled (matched, or flagged) is not offered again: a later file that rightly
leaves it out would otherwise flag it missing at the provider. Only records a run left
pending (not named, younger than the tolerance) are, until a run names or flags them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.payments import api as payments_api
from app.reconciliation import domain

DAY = timedelta(days=1)


async def open_records(
    session: AsyncSession, provider: str, settlement_date: date, days: int
) -> list[domain.InternalRecord]:
    """What this run matches against: the day's settled records, plus records of the
    earlier days inside the date tolerance that are still open. A record an earlier run
    already settled (matched or flagged) is not offered again, or a later file that
    rightly leaves it out would flag it missing at the provider."""
    first_day = settlement_date - timedelta(days=days)
    settled = await payments_api.list_settled(session, provider, first_day, settlement_date)
    if days == 0:
        still_open = None
    else:
        ran = await session.execute(
            text(
                "SELECT settlement_date FROM reconciliation.runs WHERE provider = :provider"
                " AND settlement_date >= :first AND settlement_date < :day"
            ),
            {"provider": provider, "first": first_day, "day": settlement_date},
        )
        reconciled_days = {row.settlement_date for row in ran}
        waiting = await session.execute(
            text(
                "SELECT kind, reference FROM reconciliation.pending_items"
                " WHERE provider = :provider AND settled_at >= :since AND settled_at < :until"
            ),
            {"provider": provider, **_window(first_day, settlement_date)},
        )
        still_open = (reconciled_days, {(row.kind, row.reference) for row in waiting})
    record = domain.InternalRecord
    return [
        record(
            item.provider_reference,
            item.kind,
            item.amount_minor,
            item.currency,
            item.settled_on,
            item.subject_id,
            item.settled_at,
        )
        for item in settled
        if still_open is None
        or item.settled_on == settlement_date
        or item.settled_on not in still_open[0]
        or (item.kind, item.provider_reference) in still_open[1]
    ]


def _window(first_day: date, last_day: date) -> dict[str, datetime]:
    since = datetime.combine(first_day, time.min, tzinfo=UTC)
    return {"since": since, "until": datetime.combine(last_day, time.min, tzinfo=UTC) + DAY}


async def store(
    session: AsyncSession,
    run_id: str,
    provider: str,
    settlement_date: date,
    days: int,
    report: domain.Report,
) -> None:
    # This run looked again at every record of its window: what was pending there is
    # now matched, flagged, or pending again (listed anew below).
    await session.execute(
        text(
            "DELETE FROM reconciliation.pending_items"
            " WHERE provider = :provider AND settled_at >= :since AND settled_at < :until"
        ),
        {"provider": provider, **_window(settlement_date - timedelta(days=days), settlement_date)},
    )
    if not report.pending:
        return
    fallback = datetime.combine(settlement_date, time.min, tzinfo=UTC)
    await session.execute(
        text(
            "INSERT INTO reconciliation.pending_items (run_id, provider, kind, reference,"
            " settled_at) VALUES (:run, :provider, :kind, :reference, :at)"
        ),
        [
            {
                "run": run_id,
                "provider": provider,
                "kind": record.kind,
                "reference": record.reference,
                "at": record.occurred_at or fallback,
            }
            for record in report.pending
        ],
    )
