"""The reconciliation domain's public door: run a provider's day, on demand or on schedule.

    run = await reconciliation_api.reconcile_day(sessions, providers, "acme", day, actor)

The worker calls `run_scheduled` once a cycle: yesterday (UTC) for every provider, each at
most once (a day already reconciled is skipped without fetching), then writes the
`recon.run` evidence records still owed (runs made while the evidence service was down,
or by a process without an evidence client, such as `moneypath recon upload`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform import metrics
from app.platform.errors import DomainError, InvariantViolation
from app.platform.signed_client import AsyncSignedClient
from app.providers import api as providers_api
from app.reconciliation import lag, run_evidence, runs
from app.reconciliation.runs import Run

log = structlog.get_logger("moneypath.reconciliation")

WORKER_ACTOR = "worker"

MAX_UPLOAD_BYTES = runs.MAX_FILE_BYTES

__all__ = [
    "EVIDENCE_RECORD_TYPE",
    "MAX_UPLOAD_BYTES",
    "Run",
    "ScheduledReport",
    "reconcile_day",
    "refresh_metrics",
    "run_scheduled",
    "submit_owed_evidence",
]

EVIDENCE_RECORD_TYPE = run_evidence.RECORD_TYPE


async def reconcile_day(
    sessions: async_sessionmaker[AsyncSession],
    providers: providers_api.ProviderClients | None,
    provider: str,
    settlement_date: date,
    *,
    started_by: str,
    data: bytes | None = None,
    request_id: str | None = None,
    evidence: AsyncSignedClient | None = None,
) -> tuple[Run, bool]:
    """Reconcile one provider's day: the given file bytes (an upload) or the provider's
    own file, fetched. Returns the run and whether this call made it (False: the day
    was already reconciled and nothing was fetched).

    With an `evidence` client, a new run's `recon.run` record is written right after it
    committed; without one, or when the service is down, the worker writes it later."""
    name = runs.check_day(provider, settlement_date)
    tolerances = runs.tolerances_from_env()
    work_mem_mb = runs.work_mem_mb_from_env()
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
            work_mem_mb=work_mem_mb,
            request_id=request_id,
        )
    run, created = made
    if created and evidence is not None:
        evidence_id = await run_evidence.record(sessions, evidence, run)
        if evidence_id is not None:
            async with sessions() as session:
                run = await runs.get(session, run.id)
    # The gauges are the worker's alone (`run_scheduled` refreshes them every cycle): an
    # API process that set them here would keep a stale value that `max()` across
    # targets then reports.
    return run, created


async def refresh_metrics(sessions: async_sessionmaker[AsyncSession], provider: str) -> None:
    """The provider's lag (its oldest unreconciled transaction's age, `lag`) and open
    discrepancies, and how many runs still owe their evidence record."""
    now = datetime.now(UTC)
    async with sessions() as session:
        lag_s = await lag.lag_seconds(session, provider, now=now)
        open_count = await lag.open_discrepancies(session, provider)
        owed = await run_evidence.count_owed(session)
    metrics.set_reconciliation(provider, lag_s, open_count)
    metrics.set_reconciliation_evidence_owed(owed)


async def submit_owed_evidence(
    sessions: async_sessionmaker[AsyncSession],
    evidence: AsyncSignedClient,
    *,
    limit: int = run_evidence.MAX_OWED_PER_CYCLE,
) -> int:
    """Worker step: write the records of runs that still owe one, oldest first; stops at
    the first failure (the service is down: the next cycle tries again). Returns how
    many were written."""
    async with sessions() as session:
        owed = await run_evidence.owed(session, limit)
    written = 0
    for run_id in owed:
        async with sessions() as session:
            run = await runs.get(session, run_id)
        if await run_evidence.record(sessions, evidence, run) is None:
            break
        written += 1
    async with sessions() as session:
        metrics.set_reconciliation_evidence_owed(await run_evidence.count_owed(session))
    return written


@dataclass(frozen=True, slots=True)
class ScheduledReport:
    runs_made: int
    runs_existing: int
    runs_failed: int
    evidence_written: int = 0


async def run_scheduled(
    sessions: async_sessionmaker[AsyncSession],
    providers: providers_api.ProviderClients,
    *,
    today: date | None = None,
    evidence: AsyncSignedClient | None = None,
) -> ScheduledReport:
    """Worker step: reconcile yesterday for every provider (bounded: one file each), then
    write the evidence records still owed (bounded: MAX_OWED_PER_CYCLE)."""
    day = (today or datetime.now(UTC).date()) - timedelta(days=1)
    made = existing = failed = 0
    for provider in providers_api.PROVIDERS:
        try:
            _, created = await reconcile_day(
                sessions, providers, provider, day, started_by=WORKER_ACTOR, evidence=evidence
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
    written = 0
    if evidence is not None:
        written = await submit_owed_evidence(sessions, evidence)
    return ScheduledReport(
        runs_made=made, runs_existing=existing, runs_failed=failed, evidence_written=written
    )
