"""The maintenance worker: monthly postings partitions, and the `moneypath worker` command."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from app.entrypoints import worker
from app.entrypoints.devstack import Stack
from app.platform.settings import Settings
from tests.integration.ledger.helpers import open_account, transfer


def _month(offset: int) -> str:
    now = datetime.now(UTC)
    index = now.year * 12 + now.month - 1 + offset
    return f"{index // 12:04d}{index % 12 + 1:02d}"


def test_postings_land_in_the_current_month_partition(client_factory: Any, stack: Stack) -> None:
    client = client_factory(scopes=["ledger:write", "ledger:read"])
    source = open_account(client, overdraft_limit_minor=None)["id"]
    target = open_account(client)["id"]
    txn = transfer(client, source, target, 10).json()
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT DISTINCT tableoid::regclass::text FROM ledger.postings"
            " WHERE transaction_id = %s",
            (txn["id"],),
        ).fetchall()
    assert rows == [(f"ledger.postings_{_month(0)}",)]


def test_worker_recreates_a_missing_future_partition(stack: Stack, settings: Settings) -> None:
    assert stack.database_url is not None
    future = f"ledger.postings_{_month(3)}"
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {future}")
        assert connection.execute("SELECT to_regclass(%s)", (future,)).fetchone() == (None,)
    report = asyncio.run(worker.run_once(settings))
    assert report.partitions_created == 1
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        assert connection.execute("SELECT to_regclass(%s)::text", (future,)).fetchone() == (future,)
    assert asyncio.run(worker.run_once(settings)).partitions_created == 0


def test_worker_command_runs_one_cycle_and_prints_its_report(stack: Stack, repo_root: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.entrypoints.cli", "worker", "--once"],
        env={**stack.app_env(), "MONEYPATH_ENV": "test"},
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # Other domains' steps (payments, risk, ...) add their own keys to the same report.
    assert {
        "holds_expired",
        "partitions_created",
        "idempotency_keys_deleted",
        "payments",
        "velocity_rows_pruned",
        "reconciliation",
    } <= set(report)
    assert report["velocity_rows_pruned"] >= 0
