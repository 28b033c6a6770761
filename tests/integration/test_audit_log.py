"""The audit log is append-only and partitioned by month, with partitions made ahead."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import psycopg
import pytest

from app.entrypoints import worker
from app.entrypoints.devstack import Stack
from app.platform.settings import Settings


def _month(offset: int) -> str:
    now = datetime.now(UTC)
    index = now.year * 12 + now.month - 1 + offset
    return f"{index // 12}{index % 12 + 1:02d}"


def test_raw_sql_update_or_delete_of_an_audit_record_is_refused(stack: Stack) -> None:
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO platform.audit_log (event_type, outcome) VALUES ('probe', 'success')"
        )
        for statement in (
            "UPDATE platform.audit_log SET outcome = 'failure' WHERE event_type = 'probe'",
            "DELETE FROM platform.audit_log WHERE event_type = 'probe'",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                connection.execute(statement)
        count = connection.execute(
            "SELECT count(*) FROM platform.audit_log"
            " WHERE event_type = 'probe' AND outcome = 'success'"
        ).fetchone()
    assert count is not None
    assert count[0] >= 1


def test_worker_creates_a_missing_future_audit_partition(stack: Stack, settings: Settings) -> None:
    assert stack.database_url is not None
    future = f"platform.audit_log_{_month(3)}"
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {future}")
    report = asyncio.run(worker.run_once(settings))
    assert report.partitions_created >= 1
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        found = connection.execute("SELECT to_regclass(%s)::text", (future,)).fetchone()
    assert found == (future,)
