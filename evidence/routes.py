"""The evidence service's HTTP endpoints, declared for the shared platform pipeline.

There is deliberately no PUT, PATCH or DELETE anywhere: records can only be added.
Every read is audited (`audit_reads=True`), because auditors' reads must themselves be
logged (PCI DSS 10.2.1.3).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from app.platform.errors import NotFoundError, ValidationError
from app.platform.web import (
    Call,
    Endpoint,
    Result,
    decode_cursor,
    encode_cursor,
    page_limit,
)
from evidence import exports, records, service
from evidence.config import EvidenceSettings
from evidence.runtime import services_of
from evidence.signing import TransitSigner

READ = ("evidence:read",)
WRITE = ("evidence:write",)
_HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_COMMIT = re.compile(records.COMMIT_PATTERN)
_CONTROL = re.compile(records.CONTROL_REF_PATTERN)
_TYPE = re.compile(records.TYPE_PATTERN)
_DIGEST = re.compile(records.ATTACHMENT_DIGEST_PATTERN)
_ID = re.compile(r"^evd_[0-9a-f]{32}$")

APPENDS = Counter("evidence_appends_total", "Evidence records appended, by type.", ["type"])


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


_TIME = {"type": "string", "format": "date-time"}
_FROM = _query("from", "collected_at lower bound (inclusive), RFC 3339 UTC", _TIME)
_TO = _query("to", "collected_at upper bound (exclusive), RFC 3339 UTC", _TIME)
_PAGE = (
    _query("limit", "page size", {"type": "integer", "minimum": 1, "maximum": 200}),
    _query("cursor", "next_cursor of the previous page", {"type": "string", "maxLength": 512}),
)
_FILTERS = (
    _query("control", "one entry of control_refs, exactly", {"type": "string"}),
    _query("type", "record type", {"type": "string"}),
    _query("result", "record result", {"type": "string", "enum": list(records.RESULTS)}),
    _query("commit", "subject.commit", {"type": "string"}),
    _FROM,
    _TO,
)

_PROOF_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "required": ["leaf_index", "tree_size", "hashes"],
    "properties": {
        "leaf_index": {"type": "integer"},
        "tree_size": {"type": "integer"},
        "hashes": {"type": "array", "items": _HEX64},
    },
}
_CHECKPOINT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["origin", "size", "root_hash", "timestamp", "key_id", "signature", "note"],
    "properties": {
        "origin": {"type": "string"},
        "size": {"type": "integer"},
        "root_hash": _HEX64,
        "timestamp": {"type": "string", "format": "date-time"},
        "key_id": {"type": "string"},
        "signature": {"type": "string", "description": "base64 Ed25519 signature of note"},
        "note": {"type": "string", "description": "<origin>\\n<size>\\n<base64 root>\\n"},
    },
}
_ATTACHMENT_REQUEST: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["media_type", "content_base64"],
    "properties": {
        "media_type": {
            "type": "string",
            "pattern": r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$",
        },
        "content_base64": {"type": "string", "maxLength": 16 * 1024 * 1024},
    },
}


def _settings(call: Call) -> EvidenceSettings:
    return services_of(call).settings


def _signer(call: Call) -> TransitSigner:
    return services_of(call).signer


def _only(query: Mapping[str, str], allowed: set[str]) -> None:
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise ValidationError(f"unknown query parameter {unknown[0]!r}")


def _time(query: Mapping[str, str], name: str) -> datetime | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    return records.parse_time(raw)


def _matching(
    query: Mapping[str, str], name: str, pattern: re.Pattern[str] | None = None
) -> str | None:
    value = query.get(name)
    if value is None:
        return None
    if pattern is not None and not pattern.match(value):
        raise ValidationError(f"{name}: {value!r} is not a valid {name}")
    return value


def _filters(query: Mapping[str, str]) -> service.Filters:
    result = query.get("result")
    if result is not None and result not in records.RESULTS:
        raise ValidationError(f"result must be one of {', '.join(records.RESULTS)}")
    filters = service.Filters(
        control=_matching(query, "control", _CONTROL),
        type=_matching(query, "type", _TYPE),
        result=result,
        commit=_matching(query, "commit", _COMMIT),
        collected_from=_time(query, "from"),
        collected_to=_time(query, "to"),
    )
    if (
        filters.collected_from is not None
        and filters.collected_to is not None
        and filters.collected_to < filters.collected_from
    ):
        raise ValidationError("to must not be before from")
    return filters


async def _proven(session: AsyncSession, stored: service.StoredRecord) -> dict[str, Any]:
    checkpoint = await service.latest_checkpoint(session)
    proof: dict[str, Any] | None = None
    if checkpoint is not None and stored.seq < checkpoint.size:
        hashes = (await service.inclusion_proofs(session, [stored.seq], checkpoint.size))[
            stored.seq
        ]
        proof = service.proof_json(stored.seq, checkpoint.size, hashes)
    return {
        "record": stored.record,
        "leaf_hash": stored.leaf_hash.hex(),
        "inclusion_proof": proof,
        "checkpoint": checkpoint.as_json() if checkpoint is not None else None,
    }


def _record_id(call: Call) -> str:
    record_id = call.path["id"]
    if not _ID.match(record_id):
        raise service.RecordNotFoundError(f"no evidence record {record_id}")
    return record_id


# ---- handlers -------------------------------------------------------------------------


async def create_record(call: Call, session: AsyncSession) -> Result:
    submission = records.prepare_submission(call.body)
    appended = await service.append(session, submission)
    APPENDS.labels(type=submission["type"]).inc()
    checkpointer = services_of(call).checkpointer
    if checkpointer is not None:
        checkpointer.appended(appended.seq)
    return Result(201, appended.as_json(), resource_id=appended.id)


async def list_records(call: Call, session: AsyncSession) -> Result:
    _only(call.query, {"control", "type", "result", "commit", "from", "to", "limit", "cursor"})
    filters = _filters(call.query)
    limit = page_limit(call.query)
    cursor = decode_cursor(call.query)
    after: int | None = None
    if cursor is not None:
        value = cursor.get("after")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValidationError("cursor is not one we issued")
        after = value
    page, last = await service.query(session, filters, after, limit)
    next_cursor = encode_cursor({"after": last}) if last is not None else None
    return Result(200, {"data": page, "next_cursor": next_cursor})


async def read_record(call: Call, session: AsyncSession) -> Result:
    _only(call.query, set())
    stored = await service.get_record(session, _record_id(call))
    return Result(200, await _proven(session, stored), resource_id=stored.record["id"])


async def read_in_toto(call: Call, session: AsyncSession) -> Result:
    _only(call.query, set())
    stored = await service.get_record(session, _record_id(call))
    proven = await _proven(session, stored)
    statement = exports.in_toto_statement(
        stored.record, stored.leaf_hash, proven["inclusion_proof"], proven["checkpoint"]
    )
    return Result(200, statement, resource_id=stored.record["id"])


async def latest_checkpoint(call: Call, session: AsyncSession) -> Result:
    _only(call.query, set())
    checkpoint = await service.latest_checkpoint(session)
    if checkpoint is None:
        raise NotFoundError("no checkpoint has been issued yet")
    return Result(200, checkpoint.as_json(), resource_id=str(checkpoint.size))


async def public_keys(call: Call, session: AsyncSession) -> Result:
    _only(call.query, set())
    keys = await _signer(call).arefresh()
    return Result(200, {"keys": [key.as_json() for key in keys]})


def _size(query: Mapping[str, str], name: str) -> int:
    raw = query.get(name)
    if raw is None or not raw.isdigit() or len(raw) > 18:
        raise ValidationError(f"{name} must be a tree size (a non-negative integer)")
    return int(raw)


async def consistency_proof(call: Call, session: AsyncSession) -> Result:
    _only(call.query, {"first", "second"})
    first, second = _size(call.query, "first"), _size(call.query, "second")
    hashes = await service.consistency(session, first, second)
    return Result(200, {"first": first, "second": second, "hashes": [h.hex() for h in hashes]})


async def export_oscal(call: Call, session: AsyncSession) -> Result:
    _only(call.query, {"from", "to"})
    filters = _filters(call.query)
    items = await service.records_for_export(session, filters, _settings(call).export_max_records)
    document = exports.oscal_assessment_results(
        items,
        generated_at=datetime.now(UTC),
        collected_from=filters.collected_from,
        collected_to=filters.collected_to,
        origin=_settings(call).origin,
    )
    return Result(200, document)


async def export_bundle(call: Call, session: AsyncSession) -> Result:
    _only(call.query, {"from", "to"})
    filters = _filters(call.query)
    keys = [key.as_json() for key in await _signer(call).arefresh()]
    bundle = await service.export_bundle(session, filters, _settings(call).export_max_records, keys)
    if bundle is None:
        raise NotFoundError("no checkpoint has been issued yet")
    return Result(200, bundle)


async def create_attachment(call: Call, session: AsyncSession) -> Result:
    stored = await service.store_attachment(
        session,
        call.body["media_type"],
        call.body["content_base64"],
        _settings(call).attachment_limit_bytes,
    )
    return Result(201, stored, resource_id=stored["digest"])


async def read_attachment(call: Call, session: AsyncSession) -> Result:
    _only(call.query, set())
    digest = call.path["id"]
    if not _DIGEST.match(digest):
        raise NotFoundError(f"no attachment {digest}")
    return Result(200, await service.get_attachment(session, digest), resource_id=digest)


# ---- declarations ---------------------------------------------------------------------

_CREATED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "seq", "leaf_hash", "collected_at"],
    "properties": {
        "id": {"type": "string"},
        "seq": {"type": "integer"},
        "leaf_hash": _HEX64,
        "collected_at": {"type": "string", "format": "date-time"},
    },
}


def endpoints() -> list[Endpoint]:
    tag = "evidence"
    return [
        Endpoint(
            method="POST",
            path="/v1/evidence",
            handler=create_record,
            action="evidence.create",
            resource_type="evidence",
            summary="Append an evidence record (never changed or deleted afterwards)",
            scopes=WRITE,
            success_status=201,
            request_schema=records.RECORD_REQUEST_SCHEMA,
            response_schema=_CREATED_SCHEMA,
            idempotent=True,
            errors=(records.RecordTooLargeError, service.UnknownAttachmentError),
            tag=tag,
        ),
        Endpoint(
            method="GET",
            path="/v1/evidence",
            handler=list_records,
            action="evidence.list",
            resource_type="evidence",
            summary="Query records by control, type, result, commit and collected_at range",
            scopes=READ,
            query_parameters=(*_FILTERS, *_PAGE),
            response_schema={
                "type": "object",
                "required": ["data", "next_cursor"],
                "properties": {
                    "data": {"type": "array", "items": records.RECORD_SCHEMA},
                    "next_cursor": {"type": ["string", "null"]},
                },
            },
            tag=tag,
            audit_reads=True,
        ),
        Endpoint(
            method="GET",
            path="/v1/evidence/{id}",
            handler=read_record,
            action="evidence.read",
            resource_type="evidence",
            summary="A record with its inclusion proof against the latest checkpoint",
            scopes=READ,
            response_schema={
                "type": "object",
                "required": ["record", "leaf_hash", "inclusion_proof", "checkpoint"],
                "properties": {
                    "record": records.RECORD_SCHEMA,
                    "leaf_hash": _HEX64,
                    "inclusion_proof": _PROOF_SCHEMA,
                    "checkpoint": {"oneOf": [_CHECKPOINT_SCHEMA, {"type": "null"}]},
                },
            },
            errors=(service.RecordNotFoundError,),
            tag=tag,
            audit_reads=True,
        ),
        Endpoint(
            method="GET",
            path="/v1/evidence/{id}/in-toto",
            handler=read_in_toto,
            action="evidence.exports.in_toto",
            resource_type="evidence",
            summary="The record as an in-toto Statement v1",
            scopes=READ,
            errors=(service.RecordNotFoundError,),
            tag=tag,
            audit_reads=True,
        ),
        Endpoint(
            method="GET",
            path="/v1/checkpoints/latest",
            handler=latest_checkpoint,
            action="evidence.checkpoints.read",
            resource_type="checkpoint",
            summary="The latest signed tree head",
            scopes=READ,
            response_schema=_CHECKPOINT_SCHEMA,
            errors=(NotFoundError,),
            tag=tag,
            audit_reads=True,
        ),
        Endpoint(
            method="GET",
            path="/v1/checkpoints/public-key",
            handler=public_keys,
            action="evidence.keys.read",
            resource_type="checkpoint_key",
            summary="Checkpoint verification keys (PEM and JWK), current and previous",
            scopes=READ,
            tag=tag,
            audit_reads=True,
        ),
        Endpoint(
            method="GET",
            path="/v1/proofs/consistency",
            handler=consistency_proof,
            action="evidence.proofs.read",
            resource_type="proof",
            summary="RFC 9162 consistency proof between two tree sizes",
            scopes=READ,
            query_parameters=(
                _query("first", "the older tree size", {"type": "integer", "minimum": 1}),
                _query("second", "the newer tree size", {"type": "integer", "minimum": 1}),
            ),
            response_schema={
                "type": "object",
                "required": ["first", "second", "hashes"],
                "properties": {
                    "first": {"type": "integer"},
                    "second": {"type": "integer"},
                    "hashes": {"type": "array", "items": _HEX64},
                },
            },
            errors=(service.TreeSizeError,),
            tag=tag,
            audit_reads=True,
        ),
        Endpoint(
            method="GET",
            path="/v1/exports/oscal",
            handler=export_oscal,
            action="evidence.exports.oscal",
            resource_type="export",
            summary="OSCAL 1.1.2 assessment-results for a collected_at range",
            scopes=READ,
            query_parameters=(_FROM, _TO),
            errors=(service.ExportTooLargeError,),
            tag=tag,
            audit_reads=True,
        ),
        Endpoint(
            method="GET",
            path="/v1/exports/bundle",
            handler=export_bundle,
            action="evidence.exports.bundle",
            resource_type="export",
            summary="Offline-verifiable bundle: records, proofs, checkpoint and keys",
            scopes=READ,
            query_parameters=(_FROM, _TO),
            errors=(service.ExportTooLargeError, service.RecordNotFoundError),
            tag=tag,
            audit_reads=True,
        ),
        Endpoint(
            method="POST",
            path="/v1/attachments",
            handler=create_attachment,
            action="evidence.attachments.create",
            resource_type="attachment",
            summary="Store an attachment under its sha-256 digest",
            scopes=WRITE,
            success_status=201,
            request_schema=_ATTACHMENT_REQUEST,
            idempotent=True,
            errors=(service.AttachmentTooLargeError,),
            tag=tag,
        ),
        Endpoint(
            method="GET",
            path="/v1/attachments/{id}",
            handler=read_attachment,
            action="evidence.attachments.read",
            resource_type="attachment",
            summary="An attachment by digest (sha256:<hex>), base64 encoded",
            scopes=READ,
            errors=(NotFoundError,),
            tag=tag,
            audit_reads=True,
        ),
    ]
