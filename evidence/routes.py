"""The evidence service's handlers: what each declared endpoint (`endpoints.py`) does.

Each takes the checked `Call` and the request's session from the platform pipeline.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from app.platform.errors import ForbiddenError, InvariantViolation, NotFoundError, ValidationError
from app.platform.web import (
    Call,
    Principal,
    Result,
    Services,
    decode_cursor,
    encode_cursor,
    page_limit,
)
from evidence import attachments, exports, records, service, tree
from evidence.config import EvidenceSettings
from evidence.runtime import EvidenceServices, services_of
from evidence.signing import TransitSigner
from evidence.trust import SubmitterTrust

_COMMIT = re.compile(records.COMMIT_PATTERN)
_CONTROL = re.compile(records.CONTROL_REF_PATTERN)
_TYPE = re.compile(records.TYPE_PATTERN)
_DIGEST = re.compile(records.ATTACHMENT_DIGEST_PATTERN)
_ID = re.compile(r"^evd_[0-9a-f]{32}$")

APPENDS = Counter("evidence_appends_total", "Evidence records appended, by type.", ["type"])


def _settings(call: Call) -> EvidenceSettings:
    return services_of(call).settings


def _trust(call: Call) -> SubmitterTrust:
    return services_of(call).submitter_trust


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
    checkpoint = await tree.latest_checkpoint(session)
    proof: dict[str, Any] | None = None
    if checkpoint is not None and stored.seq < checkpoint.size:
        hashes = (await tree.inclusion_proofs(session, [stored.seq], checkpoint.size))[stored.seq]
        proof = tree.proof_json(stored.seq, checkpoint.size, hashes)
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


def _submitter(call: Call) -> records.Submitter:
    # The pipeline verified the token and that the request was signed with the key the
    # token binds (key_not_bound otherwise), so principal.key_id is the signature's keyid.
    principal = call.principal
    if principal is None or principal.key_id is None:
        raise InvariantViolation("evidence_writer_verified", "an unsigned evidence write")
    return records.Submitter(client_id=principal.client_id, key_id=principal.key_id)


async def admit_record_type(principal: Principal, raw: bytes, services: Services) -> None:
    """The trust policy's write verdict on the type the body names (the pipeline asks it
    with the other policy checks, before validation). Nothing is written on a refusal: a
    look-alike anchor from another writer is refused outright."""
    record_type = records.declared_type(raw)
    if record_type is None:
        return
    if not isinstance(services, EvidenceServices):
        raise InvariantViolation("evidence_services", "evidence admission without its services")
    if not await services.submitter_trust.admits(record_type, principal.client_id):
        raise ForbiddenError(f"this client may not write {record_type[:64]} records")


async def create_record(call: Call, session: AsyncSession) -> Result:
    submission = records.prepare_submission(call.body)
    submitter = _submitter(call)
    appended = await service.append(session, submission, submitter=submitter)
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
    checkpoint = await tree.latest_checkpoint(session)
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
    hashes = await tree.consistency(session, first, second)
    return Result(200, {"first": first, "second": second, "hashes": [h.hex() for h in hashes]})


async def export_oscal(call: Call, session: AsyncSession) -> Result:
    _only(call.query, {"from", "to"})
    filters = _filters(call.query)
    items = await service.records_for_export(session, filters, _settings(call).export_max_records)
    trusted = await _trust(call).trusted_records(items)
    document = exports.oscal_assessment_results(
        items,
        trusted=trusted,
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
    stored = await attachments.store_attachment(
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
    return Result(200, await attachments.get_attachment(session, digest), resource_id=digest)
