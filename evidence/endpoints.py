"""The evidence service's HTTP endpoints, declared for the shared platform pipeline.

There is deliberately no PUT, PATCH or DELETE anywhere: records can only be added.
Every read is audited (`audit_reads=True`), because auditors' reads must themselves be
logged (PCI DSS 10.2.1.3). The handlers are in `routes.py`.
"""

from __future__ import annotations

from typing import Any

from app.platform.errors import NotFoundError
from app.platform.web import Endpoint
from evidence import attachments, records, service, tree
from evidence.routes import (
    admit_record_type,
    consistency_proof,
    create_attachment,
    create_record,
    export_bundle,
    export_oscal,
    latest_checkpoint,
    list_records,
    public_keys,
    read_attachment,
    read_in_toto,
    read_record,
)

READ = ("evidence:read",)
WRITE = ("evidence:write",)
_HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}


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
            admit=admit_record_type,
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
            errors=(tree.TreeSizeError,),
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
            errors=(attachments.AttachmentTooLargeError,),
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
