"""Reconciliation runs: a provider's settlement file for one day against our records.

A run takes the file's bytes (fetched from the provider, or uploaded), loads them through
the provider's adapter, matches them against what payments booked (`staging` stages both
sides in the database, `matching` applies `domain`'s rules there in one statement), and
stores its counts and one exception per
discrepancy, all in one transaction with its audit record. One run per provider and day:
asking again returns the run already made.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.platform import audit
from app.platform.errors import ConflictError, NotFoundError, ValidationError
from app.providers import api as providers_api
from app.reconciliation import domain, matching, pending, staging

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_LINES = staging.MAX_LINES
MAX_REASON_LENGTH = 500
RUN_EVENT = "recon.run"
# The controls a run is evidence for, in the catalogue's `FRAMEWORK:CONTROL` form.
# SOC 2 PI1.3: processing is complete and accurate (our books agree with the provider's);
# CC7.2: anomalies are detected (every discrepancy becomes an exception to work);
# CC4.1: the controls are evaluated continually (a run every day, per provider).
CONTROL_REFS = ("SOC2:PI1.3", "SOC2:CC7.2", "SOC2:CC4.1")


class RunNotFoundError(NotFoundError):
    code = "not_found"


class ExceptionNotFoundError(NotFoundError):
    code = "not_found"


class ExceptionAlreadyResolvedError(ConflictError):
    code = "invalid_state"
    title = "Exception already resolved"


# A run's joins and aggregates hold a million rows: about 400 MB of the server's memory
# at a million lines, this transaction's only, once a day per provider. Below that the
# aggregate spills to disk and the run takes longer.
DEFAULT_WORK_MEM_MB = 512
MIN_WORK_MEM_MB = 4  # PostgreSQL's own default
MAX_WORK_MEM_MB = 4096  # each sort or hash of a statement may take this much


def work_mem_mb_from_env() -> int:
    """`RECON_WORK_MEM_MB`: the memory each sort and hash of a run may use, and its
    temporary tables' buffers (staging), in MiB
    (default DEFAULT_WORK_MEM_MB; an integer in [MIN_WORK_MEM_MB, MAX_WORK_MEM_MB])."""
    raw = os.environ.get("RECON_WORK_MEM_MB", str(DEFAULT_WORK_MEM_MB))
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError("RECON_WORK_MEM_MB must be an integer") from None
    if not MIN_WORK_MEM_MB <= value <= MAX_WORK_MEM_MB:
        raise ValidationError(
            f"RECON_WORK_MEM_MB must lie in [{MIN_WORK_MEM_MB}, {MAX_WORK_MEM_MB}]"
        )
    return value


def tolerances_from_env() -> domain.Tolerances:
    """`RECON_TOLERANCE_MINOR` and `RECON_TOLERANCE_DAYS` (defaults: exact, same day)."""
    try:
        amount = int(os.environ.get("RECON_TOLERANCE_MINOR", "0"))
        days = int(os.environ.get("RECON_TOLERANCE_DAYS", "0"))
    except ValueError:
        raise ValidationError("reconciliation tolerances must be integers") from None
    return domain.Tolerances(amount_minor=amount, days=days)


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    provider: str
    settlement_date: date
    source: str
    file_sha256: str
    lines: int
    matched: int
    unmatched_internal: int
    unmatched_provider: int
    amount_mismatches: int
    currency_mismatches: int
    duplicates: int
    pending: int
    started_by: str
    created_at: datetime
    tolerance_minor: int
    tolerance_days: int
    started_at: datetime
    finished_at: datetime
    evidence_id: str | None  # the `recon.run` evidence record; None while still owed


@dataclass(frozen=True, slots=True)
class ReconException:
    id: str
    run_id: str
    provider: str
    settlement_date: date
    line_class: str
    line_numbers: tuple[int, ...]
    provider_references: tuple[str, ...]
    provider_gross_minor: int | None
    internal_minor: int | None
    fee_minor: int
    currencies: tuple[str, ...]
    status: str
    resolution_reason: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    created_at: datetime


_RUN_COLUMNS = """
    id, provider, settlement_date, source, file_sha256, lines, matched, unmatched_internal,
    unmatched_provider, amount_mismatches, currency_mismatches, duplicates, pending,
    started_by, created_at, tolerance_minor, tolerance_days, started_at, finished_at,
    evidence_id
"""
_EXCEPTION_COLUMNS = """
    id, run_id, provider, settlement_date, line_class, line_numbers, provider_references,
    provider_gross_minor, internal_minor, fee_minor, currencies, status, resolution_reason,
    resolved_by, resolved_at, created_at
"""


def _run(row: Any) -> Run:
    return Run(**{name: getattr(row, name) for name in Run.__dataclass_fields__})


def _exception(row: Any) -> ReconException:
    values = {name: getattr(row, name) for name in ReconException.__dataclass_fields__}
    for name in ("line_numbers", "provider_references", "currencies"):
        values[name] = tuple(values[name])
    return ReconException(**values)


def check_day(provider: str, settlement_date: date, *, today: date | None = None) -> str:
    """The provider's canonical name, or ValidationError: a known provider, a past day."""
    name = providers_api.provider_name(provider)
    today = today or datetime.now(UTC).date()
    if settlement_date > today:
        raise ValidationError("settlement_date must not be in the future")
    if settlement_date < today - timedelta(days=366):
        raise ValidationError("settlement_date must lie within the last year")
    return name


async def find(session: AsyncSession, provider: str, settlement_date: date) -> Run | None:
    sql = (
        f"SELECT {_RUN_COLUMNS} FROM reconciliation.runs"  # noqa: S608 - fixed columns
        " WHERE provider = :provider AND settlement_date = :day"
    )
    row = (await session.execute(text(sql), {"provider": provider, "day": settlement_date})).first()
    return None if row is None else _run(row)


async def get(session: AsyncSession, run_id: str) -> Run:
    sql = f"SELECT {_RUN_COLUMNS} FROM reconciliation.runs WHERE id = :id"  # noqa: S608
    row = (await session.execute(text(sql), {"id": run_id})).first()
    if row is None:
        raise RunNotFoundError(f"no reconciliation run {run_id}")
    return _run(row)


async def reconcile(
    session: AsyncSession,
    provider: str,
    settlement_date: date,
    data: bytes,
    *,
    source: str,
    started_by: str,
    tolerances: domain.Tolerances,
    work_mem_mb: int = DEFAULT_WORK_MEM_MB,
    request_id: str | None = None,
) -> tuple[Run, bool]:
    """Run (or find) the reconciliation of `provider`'s file for `settlement_date`.

    Returns the run and whether this call made it. Nothing is written when the file does
    not parse (ValidationError). Call inside a transaction.
    """
    existing = await find(session, provider, settlement_date)
    if existing is not None:
        return existing, False
    started_at = datetime.now(UTC)
    if len(data) > MAX_FILE_BYTES:
        raise ValidationError(f"a settlement file is at most {MAX_FILE_BYTES} bytes")
    line_count = await staging.stage_lines(session, provider, data, work_mem_mb=work_mem_mb)
    await staging.stage_records(session, provider, settlement_date, tolerances.days)
    outcomes = await matching.classify(session, settlement_date, tolerances)
    digest = hashlib.sha256(data).hexdigest()
    run_id = "rrn_" + secrets.token_hex(12)
    counts = {
        "matched": outcomes["matched"],
        "unmatched_internal": outcomes["missing_internally"],
        "unmatched_provider": outcomes["missing_at_provider"],
        "amount_mismatches": outcomes["amount_mismatch"],
        "currency_mismatches": outcomes["currency_mismatch"],
        "duplicates": outcomes["duplicate"],
        "pending": outcomes[domain.PENDING],
    }
    # ON CONFLICT: a run made by someone else since `find` wins, and we return it.
    inserted = (
        await session.execute(
            text(
                "INSERT INTO reconciliation.runs (id, provider, settlement_date, source,"
                " file_sha256, lines, matched, unmatched_internal, unmatched_provider,"
                " amount_mismatches, currency_mismatches, duplicates, pending, started_by,"
                " tolerance_minor, tolerance_days, started_at, finished_at)"
                " VALUES (:id, :provider, :day, :source, :digest, :lines, :matched,"
                " :unmatched_internal, :unmatched_provider, :amount_mismatches,"
                " :currency_mismatches, :duplicates, :pending, :by, :tolerance_minor,"
                " :tolerance_days, :started_at, :finished_at)"
                " ON CONFLICT (provider, settlement_date) DO NOTHING RETURNING id"
            ),
            {
                "id": run_id,
                "provider": provider,
                "day": settlement_date,
                "source": source,
                "digest": digest,
                "lines": line_count,
                "by": started_by,
                "tolerance_minor": tolerances.amount_minor,
                "tolerance_days": tolerances.days,
                "started_at": started_at,
                "finished_at": datetime.now(UTC),
                **counts,
            },
        )
    ).first()
    if inserted is None:
        found = await find(session, provider, settlement_date)
        if found is None:
            raise RunNotFoundError("the run that won the race is gone")
        return found, False
    await _store_exceptions(session, run_id, provider, settlement_date)
    await pending.store(session, run_id, provider, settlement_date, tolerances.days)
    # Who ran what, in the audit log; the signed `recon.run` evidence record follows once
    # this transaction committed (run_evidence).
    await audit.record(
        session,
        audit.AuditEvent(
            actor=started_by,
            event_type=RUN_EVENT,
            outcome="success",
            request_id=request_id,
            origin_ip=None,
            resource_type="recon_run",
            resource_id=run_id,
            details={
                "control_refs": list(CONTROL_REFS),
                "provider": provider,
                "settlement_date": settlement_date.isoformat(),
                "source": source,
                "file_sha256": digest,
                "lines": line_count,
                "exceptions": sum(outcomes[name] for name in domain.DISCREPANCIES),
                **counts,
            },
        ),
    )
    return await get(session, run_id), True


async def _store_exceptions(
    session: AsyncSession, run_id: str, provider: str, settlement_date: date
) -> None:
    """One exception per discrepancy `matching` found, straight from its table (a file of
    unknown lines has a million of them: none passes through Python)."""
    await session.execute(
        text(
            "INSERT INTO reconciliation.exceptions (id, run_id, provider, settlement_date,"  # noqa: S608
            " line_class, line_numbers, provider_references, provider_gross_minor,"
            " internal_minor, fee_minor, currencies)"
            # 24 hex digits from a random UUID (PostgreSQL's strong random source).
            " SELECT 'rex_' || left(md5(gen_random_uuid()::text), 24), :run, :provider,"
            " :day, line_class, line_numbers, refs, gross_minor, internal_minor, fee_minor,"
            f" currencies FROM {matching.OUTCOMES}"  # a fixed table name
            " WHERE line_class = ANY(CAST(:classes AS text[]))"
        ),
        {
            "run": run_id,
            "provider": provider,
            "day": settlement_date,
            "classes": sorted(domain.DISCREPANCIES),
        },
    )


async def exceptions_of(session: AsyncSession, run_id: str) -> list[ReconException]:
    sql = (
        f"SELECT {_EXCEPTION_COLUMNS} FROM reconciliation.exceptions"  # noqa: S608
        " WHERE run_id = :run ORDER BY created_at, id"
    )
    return [_exception(row) for row in await session.execute(text(sql), {"run": run_id})]


async def list_exceptions(
    session: AsyncSession,
    *,
    status: str | None,
    limit: int,
    after: tuple[datetime, str] | None,
) -> list[ReconException]:
    """A page of exceptions, oldest first (keyset after `(created_at, id)`)."""
    sql = f"SELECT {_EXCEPTION_COLUMNS} FROM reconciliation.exceptions WHERE true"  # noqa: S608
    params: dict[str, Any] = {"limit": limit}
    if status is not None:
        sql += " AND status = :status"
        params["status"] = status
    if after is not None:
        sql += " AND (created_at, id) > (:at, :id)"
        params["at"], params["id"] = after
    sql += " ORDER BY created_at, id LIMIT :limit"
    return [_exception(row) for row in await session.execute(text(sql), params)]


async def resolve(
    session: AsyncSession, exception_id: str, *, reason: str, resolved_by: str
) -> ReconException:
    """Close one open exception with a reason. The caller audits it in the same transaction."""
    if not 1 <= len(reason) <= MAX_REASON_LENGTH:
        raise ValidationError(f"reason must be 1 to {MAX_REASON_LENGTH} characters")
    sql = f"SELECT {_EXCEPTION_COLUMNS} FROM reconciliation.exceptions WHERE id = :id FOR UPDATE"  # noqa: S608
    row = (await session.execute(text(sql), {"id": exception_id})).first()
    if row is None:
        raise ExceptionNotFoundError(f"no reconciliation exception {exception_id}")
    if row.status != "open":
        raise ExceptionAlreadyResolvedError(f"exception {exception_id} is already resolved")
    update = (
        "UPDATE reconciliation.exceptions SET status = 'resolved',"  # noqa: S608 - fixed columns
        " resolution_reason = :reason, resolved_by = :by, resolved_at = now()"
        f" WHERE id = :id RETURNING {_EXCEPTION_COLUMNS}"
    )
    updated = (
        await session.execute(
            text(update), {"id": exception_id, "reason": reason, "by": resolved_by}
        )
    ).one()
    return _exception(updated)
