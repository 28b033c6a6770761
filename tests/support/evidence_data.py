"""Test data for the evidence service: fresh databases, signers and record factories."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.entrypoints.devstack import Stack
from app.entrypoints.launchers.openbao import DEV_ROOT_TOKEN
from app.platform.db import create_engine, libpq_url, session_factory
from app.platform.settings import VaultLogin
from app.platform.vault import Vault
from evidence import database, records
from evidence.signing import TransitSigner

T = TypeVar("T")
BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
TYPES = ("sast_scan", "dependency_audit", "iac_scan", "unit_tests")
CONTROLS = (
    "SOC2:CC8.1",
    "SOC2:CC7.1",
    "PCI-DSS-4.0.1:6.3.3",
    "PCI-DSS-4.0.1:11.3.1",
    "ISO27001:A.8.32",
)
RESULTS = ("pass", "fail", "error", "info")
COMMITS = tuple(f"{i:040x}" for i in range(1, 8))
# The verified writer the log-level tests append as (the HTTP path takes it from the token).
SUBMITTER = records.Submitter(client_id="cli_" + "0" * 32, key_id="key_" + "0" * 32)


def fresh_database(stack: Stack, prefix: str = "evidence_t") -> str:
    """A new, migrated evidence database in the stack's PostgreSQL; returns its URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    assert stack.database_url is not None
    with psycopg.connect(libpq_url(stack.database_url), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = stack.database_url_for(name)
    database.upgrade(url)
    return url


def signer(stack: Stack, key_name: str = "evidence-checkpoint-test") -> TransitSigner:
    vault = Vault.login(stack.vault_addr, VaultLogin(token=DEV_ROOT_TOKEN))
    vault.ensure_engines()
    made = TransitSigner(vault, key_name)
    made.ensure_key()
    return made


def run_with_sessions(
    url: str, work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]
) -> T:
    """Run `work` on a fresh event loop with its own engine (engines are loop-bound)."""

    async def main() -> T:
        engine = create_engine(url, pool_size=4)
        try:
            return await work(session_factory(engine))
        finally:
            await engine.dispose()

    return asyncio.run(main())


def submission(i: int, **changes: Any) -> dict[str, Any]:
    started = BASE_TIME + timedelta(seconds=i)
    body: dict[str, Any] = {
        "type": TYPES[i % len(TYPES)],
        "control_refs": [CONTROLS[i % len(CONTROLS)], CONTROLS[(i * 7 + 1) % len(CONTROLS)]]
        if i % 3 == 0 and CONTROLS[i % len(CONTROLS)] != CONTROLS[(i * 7 + 1) % len(CONTROLS)]
        else [CONTROLS[i % len(CONTROLS)]],
        "result": RESULTS[(i // 2) % len(RESULTS)],
        "subject": {
            "commit": COMMITS[i % len(COMMITS)],
            "artifacts": [{"name": f"artifact-{i}.whl", "digest": "sha256:" + f"{i:064x}"}],
        },
        "tool": {"name": "bandit", "version": "1.8.0"},
        "actor": "ci/pipeline",
        "started_at": records.format_time(started),
        "finished_at": records.format_time(started + timedelta(milliseconds=500)),
        "details": {"run": i, "note": "é ünïcode"},
    }
    body.update(changes)
    return records.prepare_submission(body)


def collected_time(i: int) -> datetime:
    """The `now` the fixtures pass to append: one record per second from BASE_TIME."""
    return BASE_TIME + timedelta(seconds=i, milliseconds=900)
