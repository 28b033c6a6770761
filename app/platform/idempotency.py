"""Idempotency keys (draft-ietf-httpapi-idempotency-key-header), shared by every domain.

A key belongs to one client and one request target (API.md "Idempotency"). It is claimed
by an INSERT under the primary key (client, key), which remembers the method and the
concrete path it was sent to, and committed at once, so a concurrent repeat sees it and
gets 409. The effect and the completion of the key are then written in ONE transaction,
guarded by the claim token: either both land or neither does. A crash between claim and
completion leaves a stale claim, which a retry takes over after `stale_claim_s`; because
the effect never committed, re-running it cannot double it. The same key sent to another
target, or with another body, is 422 `idempotency_key_reused` and executes nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.platform import audit, outbox
from app.platform.db import send_with_commit
from app.platform.errors import ConflictError, DomainError, ValidationError

MAX_KEY_LENGTH = 255
KEY_PATTERN = r"^[!-~]([ -~]*[!-~])?$"
_KEY = re.compile(KEY_PATTERN)
CLEANUP_BATCH_SIZE = 1000
MAX_CLAIM_ATTEMPTS = 3
# Raised by platform.require_claim_held (platform migration 0005).
CLAIM_LOST_SQLSTATE = "MPIC1"

_INSERT_CLAIM = text(
    """
    INSERT INTO platform.idempotency_keys
        (client_id, method, path, key, fingerprint, status, claim_token,
         created_at, locked_until, expires_at)
    VALUES (:client_id, :method, :path, :key, :fingerprint, 'in_progress', :token,
            now(), now() + make_interval(secs => :stale_s),
            now() + make_interval(secs => :ttl_s))
    ON CONFLICT (client_id, key) DO NOTHING
    RETURNING 1
    """
)
_LOCK_EXISTING = text(
    """
    SELECT method, path, fingerprint, status, response_status, response_body,
           locked_until, expires_at, now() AS db_now
    FROM platform.idempotency_keys
    WHERE client_id = :client_id AND key = :key
    FOR UPDATE
    """
)


_TAKE_OVER_EXPIRED = text(
    """
    UPDATE platform.idempotency_keys
    SET method = :method, path = :path, fingerprint = :fingerprint, status = 'in_progress',
        claim_token = :token, response_status = NULL, response_body = NULL,
        created_at = now(), locked_until = now() + make_interval(secs => :stale_s),
        expires_at = now() + make_interval(secs => :ttl_s)
    WHERE client_id = :client_id AND key = :key
    """
)
_TAKE_OVER_STALE = text(
    """
    UPDATE platform.idempotency_keys
    SET claim_token = :token, locked_until = now() + make_interval(secs => :stale_s)
    WHERE client_id = :client_id AND key = :key
    """
)
# The completion plus the request's audit record (platform.audit_log, see audit.py) and
# its outbox events (outbox.collect), in one statement sent with the COMMIT
# (db.send_with_commit). Nobody reads its result before the commit, so a lost claim
# raises inside it (platform.require_claim_held, SQLSTATE CLAIM_LOST_SQLSTATE) and the
# whole transaction rolls back.
_COMPLETE_AUDIT_AND_EMIT: LiteralString = """
    WITH audited AS (
        INSERT INTO platform.audit_log
            (occurred_at, actor, event_type, outcome, code, origin_ip, request_id,
             resource_type, resource_id, decision_id, details)
        SELECT now(), %(actor)s, %(event_type)s, %(outcome)s, %(code)s, %(origin_ip)s,
               %(request_id)s, %(resource_type)s, %(resource_id)s, %(decision_id)s,
               CAST(%(details)s AS jsonb)
        WHERE CAST(%(audited)s AS boolean)
    ), emitted AS (
        INSERT INTO platform.outbox
            (event_id, event_type, event_version, aggregate_id, payload)
        SELECT v.event_id, v.event_type, v.event_version, v.aggregate_id, v.payload
        FROM ROWS FROM (
                 jsonb_to_recordset(CAST(%(outbox)s AS jsonb))
                 AS (event_id text, event_type text, event_version integer,
                     aggregate_id text, payload jsonb)
             ) WITH ORDINALITY AS v(event_id, event_type, event_version, aggregate_id, payload, n)
        ORDER BY v.n
    ), completed AS (
        UPDATE platform.idempotency_keys
        SET status = 'completed', response_status = CAST(%(status)s AS integer),
            response_body = CAST(%(body)s AS jsonb), claim_token = NULL
        WHERE client_id = %(client_id)s AND key = %(key)s
          AND claim_token = %(token)s AND status = 'in_progress'
        RETURNING 1
    )
    SELECT platform.require_claim_held(EXISTS (SELECT 1 FROM completed))
    """
_NO_AUDIT = dict.fromkeys(
    (
        "actor",
        "event_type",
        "outcome",
        "code",
        "origin_ip",
        "request_id",
        "resource_type",
        "resource_id",
        "decision_id",
        "details",
    )
)
_RELEASE = text(
    """
    DELETE FROM platform.idempotency_keys
    WHERE client_id = :client_id AND key = :key
      AND claim_token = :token AND status = 'in_progress'
    """
)
_SYNCHRONOUS_COMMIT_OFF = text("SET LOCAL synchronous_commit = off")


class IdempotencyKeyRequiredError(ValidationError):
    status = 400
    title = "Idempotency-Key required"


class IdempotencyKeyReusedError(ValidationError):
    status = 422
    title = "Idempotency-Key reused for a different request"


class IdempotencyKeyInUseError(ConflictError):
    status = 409
    title = "Idempotency-Key in use"


class ClaimLostError(DomainError):
    """Our claim was taken over as stale while we worked; our effect must roll back."""

    status = 409
    code = IdempotencyKeyInUseError.code  # to the client, a lost claim is a key in use
    title = "Idempotency-Key in use"


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: Any


@dataclass(frozen=True, slots=True)
class Claim:
    client_id: str
    key: str
    token: str


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """A key to claim early, together with a signed request's nonce
    (request_auth/admission.py), for the signing client."""

    method: str
    path: str
    key: str
    body_fingerprint: str
    ttl_s: int
    stale_claim_s: int


@dataclass(frozen=True, slots=True)
class EarlyClaim:
    """What the early claim did: `claim` is the held key; `tried` without a claim means
    the key exists (a replay, a holder, a reuse), which only `claim` may decide."""

    claim: Claim | None = None
    tried: bool = False


def fingerprint(raw_body: bytes) -> str:
    """API.md: the fingerprint is the sha-256 of the raw body bytes."""
    return hashlib.sha256(raw_body).hexdigest()


def check_key(key: str | None) -> str:
    """Accept a key of 1-255 visible ASCII characters (inner spaces allowed).

    HTTP strips a field value's outer whitespace, so a key may not start or end with a
    space; the same rule is published as KEY_PATTERN in the OpenAPI document.
    """
    if key is None or key == "":
        raise IdempotencyKeyRequiredError("this request needs an Idempotency-Key header")
    if len(key) > MAX_KEY_LENGTH or not _KEY.match(key):
        raise ValidationError(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters"
        )
    return key


async def claim_at_once(
    session: AsyncSession,
    *,
    client_id: str,
    method: str,
    path: str,
    key: str,
    body_fingerprint: str,
    ttl_s: int,
    stale_claim_s: int,
) -> Claim | None:
    """The common case in one statement: claim a key nobody holds, or return None.

    `session` must be in autocommit with `synchronous_commit=off`
    (db.create_autocommit_engine): the INSERT commits by itself, exactly like `claim`'s
    first statement followed by its commit, and for the same reason it need not wait for
    its WAL flush (see `claim`). None means the key exists (a replay, a concurrent
    holder, a reuse or an expired row): the caller then runs `claim` in a transaction,
    which decides between those under a row lock.
    """
    token = secrets.token_hex(16)
    inserted = await session.execute(
        _INSERT_CLAIM,
        {
            "client_id": client_id,
            "method": method,
            "path": path,
            "key": key,
            "fingerprint": body_fingerprint,
            "token": token,
            "ttl_s": ttl_s,
            "stale_s": stale_claim_s,
        },
    )
    if inserted.first() is None:
        return None
    return Claim(client_id, key, token)


async def claim(
    session: AsyncSession,
    *,
    client_id: str,
    method: str,
    path: str,
    key: str,
    body_fingerprint: str,
    ttl_s: int,
    stale_claim_s: int,
) -> Claim | StoredResponse:
    """Claim `key`, or return the stored response to replay.

    `method` and `path` name the request target: the concrete path
    (`/v1/ledger/transactions/txn_A/void`), never the route template.
    Raises IdempotencyKeyReusedError when the key was used for another target or with
    another body, and
    IdempotencyKeyInUseError (with Retry-After) while another request holds it.
    The caller commits the session right after a successful claim.
    """
    # The claim's commit need not wait for its WAL flush. The effect that follows commits
    # synchronously, and a synchronous commit flushes all WAL before it, this claim
    # included; if the server crashes before that, no effect exists and losing the claim
    # only lets the retry claim again. This saves one fsync per request.
    await session.execute(_SYNCHRONOUS_COMMIT_OFF)
    token = secrets.token_hex(16)
    params = {
        "client_id": client_id,
        "method": method,
        "path": path,
        "key": key,
        "fingerprint": body_fingerprint,
        "token": token,
        "ttl_s": ttl_s,
        "stale_s": stale_claim_s,
    }
    # The row we conflicted with can vanish before we lock it (its holder released it
    # after a validation error, or the cleanup worker deleted it once expired). Then the
    # key is free again: try to claim it anew, a bounded number of times.
    row = None
    for _ in range(MAX_CLAIM_ATTEMPTS):
        inserted = await session.execute(_INSERT_CLAIM, params)
        if inserted.first() is not None:
            return Claim(client_id, key, token)
        row = (await session.execute(_LOCK_EXISTING, params)).first()
        if row is not None:
            break
    if row is None:
        error = IdempotencyKeyInUseError(
            "this Idempotency-Key is being claimed and released concurrently; retry later"
        )
        error.headers["Retry-After"] = "1"
        raise error
    db_now: datetime = row.db_now
    if row.expires_at <= db_now:
        # An expired key that the cleanup worker has not reached yet counts as new.
        await session.execute(_TAKE_OVER_EXPIRED, params)
        return Claim(client_id, key, token)
    if (row.method, row.path) != (method, path):
        raise IdempotencyKeyReusedError(
            f"this Idempotency-Key was already used for {row.method} {row.path}"
        )
    if row.fingerprint != body_fingerprint:
        raise IdempotencyKeyReusedError(
            "this Idempotency-Key was already used with a different request body"
        )
    if row.status == "completed":
        return StoredResponse(status=row.response_status, body=row.response_body)
    if row.locked_until > db_now:
        wait_s = max(1, math.ceil((row.locked_until - db_now).total_seconds()))
        error = IdempotencyKeyInUseError(
            "a request with this Idempotency-Key is still being processed; retry later"
        )
        error.headers["Retry-After"] = str(wait_s)
        raise error
    # The earlier claim went stale (its process died or hung). Take it over; the claim
    # token makes sure the old holder can no longer complete it.
    await session.execute(_TAKE_OVER_STALE, params)
    return Claim(client_id, key, token)


async def complete(
    session: AsyncSession,
    held: Claim,
    status: int,
    body: Any,
    audit_event: audit.AuditEvent | None = None,
    outbox_rows: Sequence[dict[str, Any]] = (),
    *,
    rendered: bytes | None = None,
) -> None:
    """Store the response in the caller's transaction, with `audit_event` and the outbox
    rows (`outbox.collected`) if given: one statement, sent with the COMMIT. If the claim
    was taken over, the commit fails with an error that `claim_was_lost` recognizes.

    `rendered`: `body` as UTF-8 JSON already (the response's rendering); it is stored as
    jsonb, so its spacing and escapes make no difference to a replay."""
    await send_with_commit(
        session,
        _COMPLETE_AUDIT_AND_EMIT,
        {
            **(audit.params(audit_event) if audit_event is not None else _NO_AUDIT),
            "audited": audit_event is not None,
            "outbox": outbox.as_json(outbox_rows),
            "status": status,
            "body": rendered.decode() if rendered is not None else json.dumps(body, default=str),
            "client_id": held.client_id,
            "key": held.key,
            "token": held.token,
        },
    )


def claim_was_lost(error: BaseException) -> bool:
    """True when `error` is a completion's refusal: its claim was taken over meanwhile."""
    original = getattr(error, "orig", None)
    return getattr(original, "sqlstate", None) == CLAIM_LOST_SQLSTATE


async def release(session: AsyncSession, held: Claim) -> None:
    """Forget an unfinished claim so that a retry executes again (5xx, validation errors)."""
    await session.execute(
        _RELEASE,
        {
            "client_id": held.client_id,
            "key": held.key,
            "token": held.token,
        },
    )


async def delete_expired(session: AsyncSession, batch_size: int = CLEANUP_BATCH_SIZE) -> int:
    """Delete up to `batch_size` expired keys; returns how many went."""
    result = await session.execute(
        text(
            """
            DELETE FROM platform.idempotency_keys
            WHERE ctid IN (
                SELECT ctid FROM platform.idempotency_keys
                WHERE expires_at <= now() LIMIT :batch
            )
            """
        ),
        {"batch": batch_size},
    )
    deleted: int = result.rowcount  # type: ignore[attr-defined]
    return deleted
