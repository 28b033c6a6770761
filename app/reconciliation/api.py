"""The reconciliation domain's public door: run a provider's day, on demand or on schedule.

    run = await reconciliation_api.reconcile_day(sessions, providers, "acme", day, actor)

The worker calls `run_scheduled` once a cycle: yesterday (UTC) for every provider, each at
most once (a day already reconciled is skipped without fetching).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform import metrics
from app.platform.errors import DomainError, InvariantViolation
from app.providers import api as providers_api
from app.reconciliation import runs
from app.reconciliation.runs import Run

log = structlog.get_logger("moneypath.reconciliation")

WORKER_ACTOR = "worker"

MAX_UPLOAD_BYTES = runs.MAX_FILE_BYTES

__all__ = [
    "MAX_UPLOAD_BYTES",
    "Run",
    "ScheduledReport",
    "reconcile_day",
    "refresh_metrics",
    "run_scheduled",
]


async def reconcile_day(
    sessions: async_sessionmaker[AsyncSession],
    providers: providers_api.ProviderClients | None,
    provider: str,
    settlement_date: date,
    *,
    started_by: str,
    data: bytes | None = None,
    request_id: str | None = None,
) -> tuple[Run, bool]:
    """Reconcile one provider's day: the given file bytes (an upload) or the provider's
    own file, fetched. Returns the run and whether this call made it (False: the day
    was already reconciled and nothing was fetched)."""
    name = runs.check_day(provider, settlement_date)
    tolerances = runs.tolerances_from_env()
    async with sessions() as session:
        existing = await runs.find(session, name, settlement_date)
    if existing is not None:
        return existing, False
    source = "uploaded"
    if data is None:
        if providers is None:
            raise InvariantViolation("provider_clients", "fetching a file needs the providers")
        # Outside any transaction: a slow provider must not hold a database connection.
        data = await providers.fetch_settlement_file(name, settlement_date)
        source = "fetched"
    async with sessions() as session, session.begin():
        made = await runs.reconcile(
            session,
            name,
            settlement_date,
            data,
            source=source,
            started_by=started_by,
            tolerances=tolerances,
            request_id=request_id,
        )
    await refresh_metrics(sessions, name)
    return made


async def refresh_metrics(sessions: async_sessionmaker[AsyncSession], provider: str) -> None:
    """Lag: how far behind the newest reconciled day's end we are; open discrepancies."""
    async with sessions() as session:
        last = await runs.last_run_day(session, provider)
        open_count = await runs.open_discrepancies(session, provider)
    now = datetime.now(UTC)
    if last is None:
        lag_s = 0.0
    else:
        covered_until = datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC)
        lag_s = max(0.0, (now - covered_until).total_seconds())
    metrics.set_reconciliation(provider, lag_s, open_count)


@dataclass(frozen=True, slots=True)
class ScheduledReport:
    runs_made: int
    runs_existing: int
    runs_failed: int


async def run_scheduled(
    sessions: async_sessionmaker[AsyncSession],
    providers: providers_api.ProviderClients,
    *,
    today: date | None = None,
) -> ScheduledReport:
    """Worker step: reconcile yesterday for every provider (bounded: one file each)."""
    day = (today or datetime.now(UTC).date()) - timedelta(days=1)
    made = existing = failed = 0
    for provider in providers_api.PROVIDERS:
        try:
            _, created = await reconcile_day(
                sessions, providers, provider, day, started_by=WORKER_ACTOR
            )
        except DomainError as error:
            # One provider's bad or unreachable file must not stop the other's run.
            failed += 1
            log.warning(
                "reconciliation_failed", provider=provider, day=day.isoformat(), code=error.code
            )
        else:
            made += created
            existing += not created
        # Every cycle, so the lag keeps growing while a provider's files fail.
        await refresh_metrics(sessions, provider)
    return ScheduledReport(runs_made=made, runs_existing=existing, runs_failed=failed)
