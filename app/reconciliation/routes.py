"""HTTP endpoints of reconciliation (API.md "Risk and reconciliation")."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.platform import audit, web
from app.platform.errors import InvariantViolation, ValidationError
from app.platform.signed_client import AsyncSignedClient
from app.platform.utc import rfc3339_or_none
from app.platform.web import Call, Endpoint, Result, client_ip
from app.providers import api as providers_api
from app.reconciliation import api, runs
from app.reconciliation.runs import ReconException, Run

_READ = ("recon:read",)
_WRITE = ("recon:write",)
EXCEPTION_STATUSES = ("open", "resolved")

RUN_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["provider", "settlement_date"],
    "properties": {
        "provider": {"type": "string", "enum": list(providers_api.PROVIDERS)},
        "settlement_date": {"type": "string", "format": "date", "maxLength": 10},
    },
}
RESOLVE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["reason"],
    "properties": {
        "reason": {"type": "string", "minLength": 1, "maxLength": runs.MAX_REASON_LENGTH},
    },
}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_INT_OR_NULL = {"type": ["integer", "null"]}
EXCEPTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "id",
        "run_id",
        "provider",
        "settlement_date",
        "class",
        "line_numbers",
        "provider_references",
        "provider_gross_minor",
        "internal_minor",
        "fee_minor",
        "currencies",
        "status",
        "resolution_reason",
        "resolved_by",
        "resolved_at",
        "created_at",
    ],
    "properties": {
        "id": {"type": "string"},
        "run_id": {"type": "string"},
        "provider": {"type": "string"},
        "settlement_date": {"type": "string", "format": "date"},
        "class": {"type": "string"},
        "line_numbers": {"type": "array", "items": {"type": "integer"}},
        "provider_references": {"type": "array", "items": {"type": "string"}},
        "provider_gross_minor": _INT_OR_NULL,
        "internal_minor": _INT_OR_NULL,
        "fee_minor": {"type": "integer"},
        "currencies": {"type": "array", "items": {"type": "string"}},
        "status": {"type": "string", "enum": list(EXCEPTION_STATUSES)},
        "resolution_reason": {"type": ["string", "null"]},
        "resolved_by": {"type": ["string", "null"]},
        "resolved_at": _TIME,
        "created_at": {"type": "string", "format": "date-time"},
    },
}
_COUNTS = (
    "lines",
    "matched",
    "unmatched_internal",
    "unmatched_provider",
    "amount_mismatches",
    "currency_mismatches",
    "duplicates",
    "pending",
)
RUN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "id",
        "provider",
        "settlement_date",
        "source",
        "file_sha256",
        *_COUNTS,
        "exceptions",
        "started_by",
        "created_at",
        "evidence_id",
    ],
    "properties": {
        "id": {"type": "string"},
        "provider": {"type": "string"},
        "settlement_date": {"type": "string", "format": "date"},
        "source": {"type": "string", "enum": ["fetched", "uploaded"]},
        # The run's `recon.run` record in the evidence log; null until it is written.
        "evidence_id": {"type": ["string", "null"]},
        "file_sha256": {"type": "string"},
        **{name: {"type": "integer"} for name in _COUNTS},
        "exceptions": {"type": "array", "items": EXCEPTION_SCHEMA},
        "started_by": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
    },
}
EXCEPTION_PAGE_SCHEMA = web.page_schema(EXCEPTION_SCHEMA)
_LIST_PARAMETERS: tuple[dict[str, Any], ...] = (
    {
        "name": "status",
        "in": "query",
        "required": False,
        "description": "Only exceptions in this status (all when left out).",
        "schema": {"type": "string", "enum": list(EXCEPTION_STATUSES)},
    },
    *web.PAGE_PARAMETERS,
)


def exception_json(item: ReconException) -> dict[str, Any]:
    return {
        "id": item.id,
        "run_id": item.run_id,
        "provider": item.provider,
        "settlement_date": item.settlement_date.isoformat(),
        "class": item.line_class,
        "line_numbers": list(item.line_numbers),
        "provider_references": list(item.provider_references),
        "provider_gross_minor": item.provider_gross_minor,
        "internal_minor": item.internal_minor,
        "fee_minor": item.fee_minor,
        "currencies": list(item.currencies),
        "status": item.status,
        "resolution_reason": item.resolution_reason,
        "resolved_by": item.resolved_by,
        "resolved_at": rfc3339_or_none(item.resolved_at),
        "created_at": rfc3339_or_none(item.created_at),
    }


def run_json(run: Run, exceptions: list[ReconException]) -> dict[str, Any]:
    return {
        "id": run.id,
        "provider": run.provider,
        "settlement_date": run.settlement_date.isoformat(),
        "source": run.source,
        "file_sha256": run.file_sha256,
        **{name: getattr(run, name) for name in _COUNTS},
        "exceptions": [exception_json(item) for item in exceptions],
        "started_by": run.started_by,
        "created_at": rfc3339_or_none(run.created_at),
        "evidence_id": run.evidence_id,
    }


def _providers(call: Call) -> providers_api.ProviderClients:
    # The composition root's services carry a `providers` field (ApiServices).
    found = getattr(call.services, "providers", None)
    if not isinstance(found, providers_api.ProviderClients):
        raise InvariantViolation("provider_clients", "the composition root has no providers")
    return found


def _evidence(call: Call) -> AsyncSignedClient | None:
    # ApiServices' `recon_evidence`; None: the worker writes the run's record later.
    found = getattr(call.services, "recon_evidence", None)
    return found if isinstance(found, AsyncSignedClient) else None


async def create_run(call: Call, session: AsyncSession) -> Result:
    try:
        day = date.fromisoformat(call.body["settlement_date"])
    except ValueError:
        raise ValidationError("settlement_date must be a YYYY-MM-DD date") from None
    # The run commits in its own transaction (the fetch happens outside any), so a
    # replayed request finds the same run through the (provider, day) key as well.
    run, _ = await api.reconcile_day(
        call.services.sessions,
        _providers(call),
        call.body["provider"],
        day,
        started_by=call.caller.client_id,
        request_id=call.request_id,
        evidence=_evidence(call),
    )
    exceptions = await runs.exceptions_of(session, run.id)
    return Result(201, run_json(run, exceptions), resource_id=run.id)


async def read_run(call: Call, session: AsyncSession) -> Result:
    run = await runs.get(session, call.path["id"])
    return Result(200, run_json(run, await runs.exceptions_of(session, run.id)), resource_id=run.id)


async def list_exceptions(call: Call, session: AsyncSession) -> Result:
    status = call.query.get("status")
    if status is not None and status not in EXCEPTION_STATUSES:
        raise ValidationError(f"status must be one of {', '.join(EXCEPTION_STATUSES)}")
    limit = web.page_limit(call.query)
    page = await runs.list_exceptions(
        session, status=status, limit=limit + 1, after=web.decode_time_cursor(call.query)
    )
    next_cursor = None
    if len(page) > limit:
        page = page[:limit]
        last = page[-1]
        next_cursor = web.encode_time_cursor(last.created_at, last.id)
    return Result(
        200, {"data": [exception_json(item) for item in page], "next_cursor": next_cursor}
    )


async def resolve_exception(call: Call, session: AsyncSession) -> Result:
    caller = call.caller
    reason: str = call.body["reason"]
    item = await runs.resolve(session, call.path["id"], reason=reason, resolved_by=caller.client_id)
    # The request's own audit record names the action; this one keeps the reason and
    # what was resolved, in the same transaction as the change.
    await audit.record(
        session,
        audit.AuditEvent(
            actor=caller.client_id,
            event_type="recon.exception.resolved",
            outcome="success",
            request_id=call.request_id,
            origin_ip=client_ip(call.request),
            resource_type="recon_exception",
            resource_id=item.id,
            decision_id=call.decision_id,
            details={
                "reason": reason,
                "class": item.line_class,
                "run_id": item.run_id,
                "provider_references": list(item.provider_references),
            },
        ),
    )
    return Result(200, exception_json(item), resource_id=item.id)


def endpoints() -> list[Endpoint]:
    """The reconciliation domain's `/v1` endpoints, for the composition root."""
    return [
        Endpoint(
            method="POST",
            path="/v1/reconciliation/runs",
            handler=create_run,
            action="recon.runs.create",
            resource_type="recon_run",
            summary="Fetch and reconcile a provider's settlement file for one day",
            scopes=_WRITE,
            request_schema=RUN_REQUEST_SCHEMA,
            response_schema=RUN_SCHEMA,
            idempotent=True,
            tag="reconciliation",
        ),
        Endpoint(
            method="GET",
            path="/v1/reconciliation/runs/{id}",
            handler=read_run,
            action="recon.runs.read",
            resource_type="recon_run",
            summary="Read one reconciliation run with its counts and exceptions",
            scopes=_READ,
            response_schema=RUN_SCHEMA,
            errors=(runs.RunNotFoundError,),
            tag="reconciliation",
        ),
        Endpoint(
            method="GET",
            path="/v1/reconciliation/exceptions",
            handler=list_exceptions,
            action="recon.exceptions.list",
            resource_type="recon_exception",
            summary="List reconciliation exceptions, oldest first",
            scopes=_READ,
            response_schema=EXCEPTION_PAGE_SCHEMA,
            query_parameters=_LIST_PARAMETERS,
            tag="reconciliation",
        ),
        Endpoint(
            method="POST",
            path="/v1/reconciliation/exceptions/{id}/resolve",
            handler=resolve_exception,
            action="recon.exceptions.resolve",
            resource_type="recon_exception",
            summary="Resolve an open reconciliation exception, with a reason (audited)",
            scopes=_WRITE,
            request_schema=RESOLVE_SCHEMA,
            response_schema=EXCEPTION_SCHEMA,
            idempotent=True,
            errors=(runs.ExceptionNotFoundError, runs.ExceptionAlreadyResolvedError),
            tag="reconciliation",
        ),
    ]
