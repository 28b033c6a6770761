"""Background maintenance: `moneypath worker` (loop) or `moneypath worker --once`.

One cycle expires overdue ledger holds, creates the coming months' postings and audit-log
partitions, deletes expired idempotency keys, prunes risk velocity rows past their
window and reconciles yesterday's provider settlement files. Each step is bounded per
cycle, and every step is safe to run from several processes at once (SKIP LOCKED,
idempotent DDL, batched deletes, one reconciliation run per provider and day), so running
one worker per API replica is fine.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.entrypoints import anchors, worker_metrics
from app.entrypoints.bootstrap import WORKER_DATABASE_SECRET as DATABASE_SECRET
from app.ledger import api as ledger_api
from app.payments import api as payments_api
from app.platform import audit, auth_limits, idempotency
from app.platform.client_tokens import TokenRequestError
from app.platform.db import create_engine, session_factory
from app.platform.settings import Settings
from app.platform.signed_client import AsyncSignedClient
from app.platform.vault import DatabaseNotConfiguredError, Vault
from app.providers import api as providers_api
from app.reconciliation import api as reconciliation_api
from app.risk import api as risk_api

log = structlog.get_logger("moneypath.worker")

MONTHS_AHEAD = 3
MAX_CLEANUP_BATCHES_PER_CYCLE = 20


@dataclass(frozen=True, slots=True)
class CycleReport:
    holds_expired: int
    partitions_created: int
    idempotency_keys_deleted: int
    payments: payments_api.PaymentsCycle | None = None
    velocity_rows_pruned: int = 0
    reconciliation: reconciliation_api.ScheduledReport | None = None


@dataclass(slots=True)
class PaymentsWorker:
    """What the payments steps need: the saga runtime and the delivery HTTP client."""

    runtime: payments_api.Runtime
    http: httpx.AsyncClient

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.runtime.providers.aclose()


def start_payments_worker(
    vault: Vault, sessions: async_sessionmaker[AsyncSession]
) -> PaymentsWorker:
    providers = providers_api.ProviderClients(
        providers_api.ProviderSettings.from_env(), providers_api.read_provider_secrets(vault)
    )
    runtime = payments_api.start_payments(sessions, providers, vault=vault)
    return PaymentsWorker(runtime, payments_api.webhook_http_client())


async def run_cycle(
    sessions: async_sessionmaker[AsyncSession],
    payments: PaymentsWorker | None = None,
    recon_evidence: AsyncSignedClient | None = None,
) -> CycleReport:
    """One bounded pass of every maintenance step (and the payments steps, when given).
    `recon_evidence` writes the runs' `recon.run` records (and those still owed)."""
    expired = await ledger_api.expire_holds(sessions)
    async with sessions() as session, session.begin():
        created = await ledger_api.ensure_posting_partitions(session, MONTHS_AHEAD)
        created += await audit.ensure_partitions(session, MONTHS_AHEAD)
    async with sessions() as session, session.begin():
        # Floods of failed authentications are audited here, one summary per window.
        summaries = await auth_limits.flush_finished_windows(session)
    if summaries:
        log.info("auth_failure_summaries", written=summaries)
    deleted = 0
    for _ in range(MAX_CLEANUP_BATCHES_PER_CYCLE):
        async with sessions() as session, session.begin():
            batch = await idempotency.delete_expired(session)
        deleted += batch
        if batch < idempotency.CLEANUP_BATCH_SIZE:
            break
    pruned = 0
    for _ in range(MAX_CLEANUP_BATCHES_PER_CYCLE):
        async with sessions() as session, session.begin():
            batch = await risk_api.prune_velocity(session)
        pruned += batch
        if batch < risk_api.PRUNE_BATCH_SIZE:
            break
    payments_cycle = None
    if payments is not None:
        payments_cycle = await payments_api.run_worker_cycle(payments.runtime, payments.http)
    recon = None
    if payments is not None:
        # Yesterday's settlement files: at most one fetch per provider, once per day.
        recon = await reconciliation_api.run_scheduled(
            sessions, payments.runtime.providers, evidence=recon_evidence
        )
    report = CycleReport(expired, created, deleted, payments_cycle, pruned, recon)
    log.info(
        "worker_cycle",
        holds_expired=expired,
        partitions_created=created,
        idempotency_keys_deleted=deleted,
        velocity_rows_pruned=pruned,
    )
    return report


async def anchor_chain_head(
    sessions: async_sessionmaker[AsyncSession], evidence: AsyncSignedClient
) -> str | None:
    """Write the chain head into the evidence log; None (and a log line) when it failed:
    the next attempt comes at the next cadence, and verify keeps the older anchor."""
    async with sessions() as session:
        head = await ledger_api.chain_head(session)
    try:
        return await anchors.write_checkpoint(evidence, head)
    except (anchors.AnchorError, TokenRequestError) as error:
        log.error("ledger_checkpoint_failed", error=str(error))
        return None


def _evidence(settings: Settings, vault: Vault) -> AsyncSignedClient | None:
    credentials = anchors.credentials_from_vault(vault)
    if credentials is None:
        log.warning("ledger_checkpoint_disabled", reason=f"no kv/{anchors.ANCHOR_CLIENT_SECRET}")
        return None
    return anchors.evidence_client(
        credentials, evidence_url=settings.evidence_url, issuer_url=settings.public_base_url
    )


def _recon_evidence(settings: Settings, vault: Vault) -> AsyncSignedClient | None:
    return anchors.recon_evidence_client(
        vault, evidence_url=settings.evidence_url, issuer_url=settings.public_base_url
    )


def _sessions(settings: Settings) -> tuple[Vault, async_sessionmaker[AsyncSession]]:
    vault = Vault.login(settings.vault_addr, settings.vault_login)
    try:
        database_url = vault.database_url(DATABASE_SECRET)
    except DatabaseNotConfiguredError as error:
        raise SystemExit(str(error)) from None
    return vault, session_factory(create_engine(database_url, pool_size=4))


async def run_once(settings: Settings) -> CycleReport:
    vault, sessions = _sessions(settings)
    payments = start_payments_worker(vault, sessions)
    evidence = _evidence(settings, vault)
    recon_evidence = _recon_evidence(settings, vault)
    try:
        report = await run_cycle(sessions, payments, recon_evidence)
        if evidence is not None:
            await anchor_chain_head(sessions, evidence)
        return report
    finally:
        if evidence is not None:
            await evidence.aclose()
        if recon_evidence is not None:
            await recon_evidence.aclose()
        await payments.aclose()
        bind = sessions.kw.get("bind")
        if bind is not None:
            await bind.dispose()


async def run_forever(settings: Settings, *, interval_s: float, max_cycles: int | None) -> int:
    """Run cycles every `interval_s` until SIGTERM/SIGINT (or `max_cycles`), serving the
    worker's /metrics meanwhile (worker_metrics)."""
    vault, sessions = _sessions(settings)
    payments = start_payments_worker(vault, sessions)
    evidence = _evidence(settings, vault)
    recon_evidence = _recon_evidence(settings, vault)
    next_anchor_at = 0.0
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    cycles = 0
    try:
        async with worker_metrics.serving(settings, sessions):
            while not stopping.is_set() and (max_cycles is None or cycles < max_cycles):
                try:
                    await run_cycle(sessions, payments, recon_evidence)
                    if evidence is not None and loop.time() >= next_anchor_at:
                        next_anchor_at = loop.time() + settings.ledger_checkpoint_interval_s
                        await anchor_chain_head(sessions, evidence)
                except Exception as error:  # noqa: BLE001 - one failed cycle must not stop it
                    log.error("worker_cycle_failed", error_type=type(error).__name__)
                cycles += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=interval_s)
    finally:
        if evidence is not None:
            await evidence.aclose()
        if recon_evidence is not None:
            await recon_evidence.aclose()
        await payments.aclose()
        bind = sessions.kw.get("bind")
        if bind is not None:
            await bind.dispose()
    return 0
