"""Background maintenance: `moneypath worker` (loop) or `moneypath worker --once`.

One cycle expires overdue ledger holds, creates the coming months' postings and audit-log
partitions, and deletes expired idempotency keys. Each step is bounded per cycle, and every step is
safe to run from several processes at once (SKIP LOCKED, idempotent DDL, batched deletes),
so running one worker per API replica is fine.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.entrypoints.bootstrap import WORKER_DATABASE_SECRET as DATABASE_SECRET
from app.ledger import api as ledger_api
from app.platform import audit, auth_limits, idempotency
from app.platform.db import create_engine, session_factory
from app.platform.settings import Settings
from app.platform.vault import Vault

log = structlog.get_logger("moneypath.worker")

MONTHS_AHEAD = 3
MAX_CLEANUP_BATCHES_PER_CYCLE = 20


@dataclass(frozen=True, slots=True)
class CycleReport:
    holds_expired: int
    partitions_created: int
    idempotency_keys_deleted: int


async def run_cycle(sessions: async_sessionmaker[AsyncSession]) -> CycleReport:
    """One bounded pass of every maintenance step."""
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
    report = CycleReport(expired, created, deleted)
    log.info(
        "worker_cycle",
        holds_expired=expired,
        partitions_created=created,
        idempotency_keys_deleted=deleted,
    )
    return report


def _sessions(settings: Settings) -> async_sessionmaker[AsyncSession]:
    vault = Vault.login(settings.vault_addr, settings.vault_login)
    secret = vault.read_secret(DATABASE_SECRET)
    if secret is None or "url" not in secret:
        raise SystemExit(f"Vault has no kv/{DATABASE_SECRET}: run the bootstrap first")
    return session_factory(create_engine(str(secret["url"]), pool_size=2))


async def run_once(settings: Settings) -> CycleReport:
    sessions = _sessions(settings)
    try:
        return await run_cycle(sessions)
    finally:
        bind = sessions.kw.get("bind")
        if bind is not None:
            await bind.dispose()


async def run_forever(settings: Settings, *, interval_s: float, max_cycles: int | None) -> int:
    """Run cycles every `interval_s` until SIGTERM/SIGINT (or `max_cycles`)."""
    sessions = _sessions(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    cycles = 0
    try:
        while not stopping.is_set() and (max_cycles is None or cycles < max_cycles):
            try:
                await run_cycle(sessions)
            except Exception as error:  # noqa: BLE001 - one failed cycle must not stop the loop
                log.error("worker_cycle_failed", error_type=type(error).__name__)
            cycles += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=interval_s)
    finally:
        bind = sessions.kw.get("bind")
        if bind is not None:
            await bind.dispose()
    return 0
