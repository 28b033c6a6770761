"""Each reconciliation run as a `recon.run` record in the evidence log.

The run commits first (its counts, exceptions and audit record), then its record goes to
the evidence service, signed, as the reconciliation's own registered client. The record
is built only from the stored run, so every attempt sends the same bytes under the same
Idempotency-Key (`recon-run-<run id>`): a retry after a lost answer replays the first
record instead of writing a second one.

When the evidence service cannot be reached the run still stands, with `evidence_id`
null. Those runs are the outbox: the worker's `submit_owed` writes their records on its
next cycles, oldest first, and a run's `evidence_id` is set once the service accepted it.
Nothing is lost, only late, and `moneypath_reconciliation_evidence_owed` says how late.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.client_tokens import TokenRequestError
from app.platform.signed_client import AsyncSignedClient
from app.platform.utc import rfc3339_fixed
from app.reconciliation import runs
from app.reconciliation.runs import Run

log = structlog.get_logger("moneypath.reconciliation")

RECORD_TYPE = "recon.run"
CONTROL_REFS = runs.CONTROL_REFS
TOOL = {"name": "moneypath-reconciliation", "version": "1"}
# The worker catches up on at most this many owed records per cycle.
MAX_OWED_PER_CYCLE = 50


class EvidenceUnavailableError(Exception):
    """The evidence service refused the record or could not be reached."""


def exceptions_count(run: Run) -> int:
    return (
        run.unmatched_internal
        + run.unmatched_provider
        + run.amount_mismatches
        + run.currency_mismatches
        + run.duplicates
    )


def _config_digest(run: Run) -> str:
    # The tolerances are the run's configuration: the same file under other tolerances
    # is another reconciliation.
    config = {"amount_minor": run.tolerance_minor, "days": run.tolerance_days}
    encoded = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(encoded).hexdigest()


def document(run: Run) -> dict[str, Any]:
    """The run's evidence record, from the stored run only (same bytes on every retry)."""
    exceptions = exceptions_count(run)
    day = run.settlement_date.isoformat()
    return {
        "type": RECORD_TYPE,
        "control_refs": list(CONTROL_REFS),
        # A day whose books disagree with the provider's fails the control until its
        # exceptions are worked; the record keeps what the run found either way.
        "result": "pass" if exceptions == 0 else "fail",
        "subject": {
            "artifacts": [
                {
                    "name": f"settlement/{run.provider}/{day}.csv",
                    "digest": "sha256:" + run.file_sha256,
                }
            ]
        },
        "tool": {**TOOL, "config_digest": _config_digest(run)},
        "actor": f"moneypath reconciliation ({run.started_by})"[:256],
        "started_at": rfc3339_fixed(run.started_at),
        "finished_at": rfc3339_fixed(run.finished_at),
        "details": {
            "run_id": run.id,
            "provider": run.provider,
            "settlement_date": day,
            "source": run.source,
            "file_sha256": run.file_sha256,
            "lines": run.lines,
            "matched": run.matched,
            "unmatched_internal": run.unmatched_internal,
            "unmatched_provider": run.unmatched_provider,
            "amount_mismatches": run.amount_mismatches,
            "currency_mismatches": run.currency_mismatches,
            "duplicates": run.duplicates,
            "pending": run.pending,
            "exceptions": exceptions,
            "tolerance_minor": run.tolerance_minor,
            "tolerance_days": run.tolerance_days,
        },
    }


def idempotency_key(run: Run) -> str:
    return f"recon-run-{run.id}"


async def submit(client: AsyncSignedClient, run: Run) -> str:
    """Write the run's record; returns its evidence id. Raises EvidenceUnavailableError."""
    try:
        response = await client.post(
            "/v1/evidence", json=document(run), idempotency_key=idempotency_key(run)
        )
    except (httpx.HTTPError, TokenRequestError) as error:
        raise EvidenceUnavailableError(
            f"evidence service unreachable: {type(error).__name__}"
        ) from None
    if response.status_code not in (200, 201):
        raise EvidenceUnavailableError(f"evidence refused the record: {response.status_code}")
    return str(response.json()["id"])


async def record(
    sessions: async_sessionmaker[AsyncSession], client: AsyncSignedClient, run: Run
) -> str | None:
    """Submit `run`'s record and keep its id on the run; None (run still owed) on failure."""
    try:
        evidence_id = await submit(client, run)
    except EvidenceUnavailableError as error:
        log.warning("recon_evidence_owed", run_id=run.id, error=str(error))
        return None
    async with sessions() as session, session.begin():
        await session.execute(
            text(
                "UPDATE reconciliation.runs SET evidence_id = :evidence"
                " WHERE id = :id AND evidence_id IS NULL"
            ),
            {"evidence": evidence_id, "id": run.id},
        )
    log.info("recon_evidence_written", run_id=run.id, evidence_id=evidence_id)
    return evidence_id


async def owed(session: AsyncSession, limit: int) -> list[str]:
    """Ids of runs whose record is not written yet, oldest first."""
    rows = await session.execute(
        text(
            "SELECT id FROM reconciliation.runs WHERE evidence_id IS NULL"
            " ORDER BY created_at, id LIMIT :limit"
        ),
        {"limit": limit},
    )
    return [str(row.id) for row in rows]


async def count_owed(session: AsyncSession) -> int:
    row = await session.execute(
        text("SELECT count(*) FROM reconciliation.runs WHERE evidence_id IS NULL")
    )
    return int(row.scalar_one())
