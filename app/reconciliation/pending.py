"""Records a run saw but no line named yet, kept for the next runs to look at again.

With a date tolerance of N days, a run for day D matches the provider's file against the
records of D and of the N days before. A record of those earlier days that its own day's
run already settled (matched, or flagged) is not offered again (staging.stage_records): a
later file that rightly leaves it out would otherwise flag it missing at the provider.
Only records a run left pending (not named, younger than the tolerance) are, until a run
names or flags them; the lag gauge counts them unreconciled meanwhile.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.reconciliation import domain, matching

DAY = timedelta(days=1)


def _window(first_day: date, last_day: date) -> dict[str, datetime]:
    since = datetime.combine(first_day, time.min, tzinfo=UTC)
    return {"since": since, "until": datetime.combine(last_day, time.min, tzinfo=UTC) + DAY}


async def store(
    session: AsyncSession, run_id: str, provider: str, settlement_date: date, days: int
) -> None:
    """Replace the provider's pending records in this run's window by those it left
    pending (`matching`'s outcomes of class `pending`)."""
    # This run looked again at every record of its window: what was pending there is
    # now matched, flagged, or pending again (listed anew below).
    await session.execute(
        text(
            "DELETE FROM reconciliation.pending_items"
            " WHERE provider = :provider AND settled_at >= :since AND settled_at < :until"
        ),
        {"provider": provider, **_window(settlement_date - timedelta(days=days), settlement_date)},
    )
    await session.execute(
        text(
            "INSERT INTO reconciliation.pending_items (run_id, provider, kind, reference,"  # noqa: S608
            " settled_at) SELECT :run, :provider, record_kind, refs[1], at"
            f" FROM {matching.OUTCOMES} WHERE line_class = :pending"  # a fixed table name
        ),
        {"run": run_id, "provider": provider, "pending": domain.PENDING},
    )
