"""Evidence records: the submitted shape, its validation, and its canonical leaf hash.

Pure rules, no I/O. A record's identity in the log is `sha256(0x00 || JCS(record))`
(RFC 8785), so everything stored must round-trip exactly through JSON: integers within
the I-JSON safe range, no floats (their JCS form depends on binary rounding), no NUL
characters (PostgreSQL jsonb refuses them).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import rfc8785

from app.platform.errors import ValidationError
from app.platform.utc import rfc3339_fixed
from evidence import merkle

MAX_DETAILS_BYTES = 16 * 1024
MAX_RECORD_BYTES = 64 * 1024
MAX_CONTROL_REFS = 32
MAX_ARTIFACTS = 100
MAX_ATTACHMENTS = 20
MAX_NODES_IN_DETAILS = 2000
SAFE_INTEGER = 2**53 - 1
RESULTS = ("pass", "fail", "error", "info")

_RFC3339_UTC = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z$"
TYPE_PATTERN = r"^[a-z][a-z0-9_.-]{0,63}$"
# `FRAMEWORK:CONTROL`, e.g. `SOC2:CC8.1`, `PCI-DSS-4.0.1:6.3.3`, `ISO27001:A.8.32`.
CONTROL_REF_PATTERN = r"^[A-Za-z][A-Za-z0-9.-]{0,31}:[A-Za-z0-9][A-Za-z0-9._()-]{0,63}$"
DIGEST_PATTERN = r"^(sha256:[0-9a-f]{64}|sha384:[0-9a-f]{96}|sha512:[0-9a-f]{128})$"
ATTACHMENT_DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
COMMIT_PATTERN = r"^([0-9a-f]{40}|[0-9a-f]{64})$"

_NAMED_DIGEST: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "digest"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 256},
        "digest": {"type": "string", "pattern": DIGEST_PATTERN},
    },
}

RECORD_REQUEST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": [
        "type",
        "control_refs",
        "result",
        "subject",
        "actor",
        "started_at",
        "finished_at",
    ],
    "properties": {
        "type": {"type": "string", "pattern": TYPE_PATTERN},
        "control_refs": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_CONTROL_REFS,
            "uniqueItems": True,
            "items": {"type": "string", "pattern": CONTROL_REF_PATTERN},
        },
        "result": {"type": "string", "enum": list(RESULTS)},
        "subject": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "commit": {"type": "string", "pattern": COMMIT_PATTERN},
                "artifacts": {"type": "array", "maxItems": MAX_ARTIFACTS, "items": _NAMED_DIGEST},
            },
        },
        "tool": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "version"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 128},
                "version": {"type": "string", "minLength": 1, "maxLength": 64},
                "config_digest": {"type": "string", "pattern": DIGEST_PATTERN},
            },
        },
        "actor": {"type": "string", "minLength": 1, "maxLength": 256},
        "started_at": {"type": "string", "pattern": _RFC3339_UTC},
        "finished_at": {"type": "string", "pattern": _RFC3339_UTC},
        "details": {"type": "object", "maxProperties": 200},
        "attachments": {
            "type": "array",
            "maxItems": MAX_ATTACHMENTS,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "digest"],
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 256},
                    "digest": {"type": "string", "pattern": ATTACHMENT_DIGEST_PATTERN},
                },
            },
        },
    },
}

# Set by the server from the verified token (client id) and request signature (keyid).
SUBMITTED_BY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["client_id", "key_id"],
    "properties": {"client_id": {"type": "string"}, "key_id": {"type": "string"}},
}
_RECORD_PROPERTIES = {
    **RECORD_REQUEST_SCHEMA["properties"],
    "id": {"type": "string", "pattern": "^evd_[0-9a-f]{32}$"},
    "seq": {"type": "integer", "minimum": 0},
    "collected_at": {"type": "string"},
    "submitted_by": SUBMITTED_BY_SCHEMA,
}
RECORD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        *RECORD_REQUEST_SCHEMA["required"],
        "id",
        "seq",
        "collected_at",
        "submitted_by",
    ],
    "properties": _RECORD_PROPERTIES,
}
# Fields only the server writes: a body that sends one is refused by name.
SERVER_FIELDS = ("id", "seq", "collected_at", "submitted_by")


class RecordTooLargeError(ValidationError):
    title = "Evidence record too large"


def new_record_id() -> str:
    return "evd_" + secrets.token_hex(16)


# RFC 3339 UTC with microseconds, the one form `collected_at` takes.
format_time = rfc3339_fixed


def parse_time(value: str) -> datetime:
    """Parse an RFC 3339 time; naive or unparseable values raise ValidationError."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(f"{value!r} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise ValidationError(f"{value!r} has no time zone; send UTC with a Z")
    return parsed.astimezone(UTC)


def _exact_json(value: Any, budget: list[int], where: str) -> Any:
    """Return `value` with only JSON types JCS hashes unambiguously, or refuse it."""
    budget[0] -= 1
    if budget[0] < 0:
        raise RecordTooLargeError(f"details hold more than {MAX_NODES_IN_DETAILS} values")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > SAFE_INTEGER:
            raise ValidationError(f"{where}: integers must lie within ±(2**53 - 1)")
        return value
    if isinstance(value, Decimal | float):
        raise ValidationError(f"{where}: numbers with a fraction are not allowed; use a string")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationError(f"{where}: NUL characters are not allowed")
        return value
    if isinstance(value, list):
        return [_exact_json(item, budget, f"{where}/{i}") for i, item in enumerate(value)]
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if "\x00" in key:
                raise ValidationError(f"{where}: NUL characters are not allowed")
            result[key] = _exact_json(item, budget, f"{where}/{key}")
        return result
    raise ValidationError(f"{where}: unsupported JSON value")


def canonical_bytes(value: Any) -> bytes:
    """RFC 8785 JSON Canonicalization Scheme."""
    encoded: bytes = rfc8785.dumps(value)
    return encoded


def record_leaf_hash(record: Mapping[str, Any]) -> bytes:
    """The Merkle leaf of a record: sha256(0x00 || JCS(record))."""
    return merkle.leaf_hash(canonical_bytes(dict(record)))


def declared_type(raw: bytes) -> str | None:
    """The record type a submission's raw body names, or None when the body is not a JSON
    object with a string `type` (validation then answers 422). Read before validation, so
    the trust policy can refuse a type (403) ahead of any schema error."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    kind = body.get("type") if isinstance(body, dict) else None
    return kind if isinstance(kind, str) else None


def prepare_submission(body: Mapping[str, Any]) -> dict[str, Any]:
    """Check what the JSON schema cannot: time order, exact numbers, size limits.

    Raises ValidationError (422) or RecordTooLargeError (422 `record_too_large`).
    """
    for name in SERVER_FIELDS:
        if name in body:
            raise ValidationError(f"/{name}: set by the server, never by the writer")
    submission: dict[str, Any] = _exact_json(dict(body), [MAX_NODES_IN_DETAILS + 500], "")
    started = parse_time(submission["started_at"])
    finished = parse_time(submission["finished_at"])
    if finished < started:
        raise ValidationError("/finished_at: must not be before started_at")
    if "details" in submission:
        size = len(canonical_bytes(submission["details"]))
        if size > MAX_DETAILS_BYTES:
            raise RecordTooLargeError(
                f"/details: {size} bytes in canonical form, more than {MAX_DETAILS_BYTES}"
            )
    if len(canonical_bytes(submission)) > MAX_RECORD_BYTES:
        raise RecordTooLargeError(f"record larger than {MAX_RECORD_BYTES} bytes")
    return submission


@dataclass(frozen=True, slots=True)
class Submitter:
    """Who wrote a record, as verified: the token's client id and the signature's keyid."""

    client_id: str
    key_id: str

    def as_json(self) -> dict[str, str]:
        return {"client_id": self.client_id, "key_id": self.key_id}


def build_record(
    submission: Mapping[str, Any],
    record_id: str,
    seq: int,
    collected_at: datetime,
    submitter: Submitter,
) -> dict[str, Any]:
    """The stored record: the submitted fields plus id, seq, collected_at and submitted_by.

    `submitted_by` is inside the leaf, so a record cannot later be passed off as another
    writer's without breaking its inclusion proof.
    """
    return {
        **submission,
        "id": record_id,
        "seq": seq,
        "collected_at": format_time(collected_at),
        "submitted_by": submitter.as_json(),
    }


def submitter_of(record: Mapping[str, Any]) -> Submitter | None:
    """The record's verified writer; None for a record written before writers were kept."""
    value = record.get("submitted_by")
    if not isinstance(value, Mapping):
        return None
    client_id, key_id = value.get("client_id"), value.get("key_id")
    if not isinstance(client_id, str) or not isinstance(key_id, str):
        return None
    return Submitter(client_id, key_id)


def attachment_digest(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()
