"""A signed request's three database checks in one round trip (issue 16).

Before a signed request may go on, three rows decide: the client and its key are still
active, the signature's `(keyid, nonce)` pair is new, and (for an idempotent endpoint) the
Idempotency-Key is free. Asked one by one, that is three round trips through SQLAlchemy;
here it is one prepared statement on an autocommit connection:

- the nonce is recorded only when the client is active, and the key is claimed only when
  the nonce was new, so a refused request burns nothing (the same order as before: a
  disabled client's 401, then a replay's 401, then the claim);
- the claim is the same INSERT as `idempotency.claim_at_once` and, like it, commits at once
  with `synchronous_commit=off` (see there why that is safe), so a concurrent duplicate
  sees the row and gets 409 `idempotency_key_in_use` without waiting for any lock;
- a key that exists already (a replay, a holder, a reuse) is left to `idempotency.claim`,
  which decides under the row's lock, exactly as before.

What "active" means stays with its owner: the identity domain hands over its SQL
expression (`ActiveExpression`), it is not restated here.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import LiteralString

from sqlalchemy.ext.asyncio import AsyncEngine

from app.platform import idempotency
from app.platform.db import fetch_rows_pooled, session_factory
from app.platform.request_auth.nonces import (
    NONCE_CLEANUP_INTERVAL_S,
    NONCE_TTL_S,
    delete_expired_nonces,
)
from app.platform.request_auth.refusals import InvalidTokenError, ReplayedRequestError


@dataclass(frozen=True, slots=True)
class ActiveExpression:
    """An SQL boolean expression over `%(client_id)s` and `%(key_id)s` (both text) that is
    true while the client and its key may be used; its owner defines it."""

    sql: LiteralString


# The statement around the owner's `is_active` expression (see the module docstring).
_ACTIVE_OPEN: LiteralString = "WITH active AS (SELECT coalesce(("
_ACTIVE_CLOSE_AND_CLAIMS: LiteralString = """
        ), false) AS ok
    ), nonce AS (
        INSERT INTO platform.seen_nonces (key_id, nonce, expires_at)
        SELECT %(key_id)s, %(nonce)s, now() + make_interval(secs => %(nonce_ttl_s)s)
        FROM active WHERE active.ok
        ON CONFLICT (key_id, nonce) DO NOTHING
        RETURNING 1
    ), claimed AS (
        INSERT INTO platform.idempotency_keys
            (client_id, method, path, key, fingerprint, status, claim_token,
             created_at, locked_until, expires_at)
        SELECT %(client_id)s, %(method)s, %(path)s, %(key)s, %(fingerprint)s,
               'in_progress', %(token)s, now(),
               now() + make_interval(secs => %(stale_s)s),
               now() + make_interval(secs => %(ttl_s)s)
        FROM nonce WHERE %(claim)s
        ON CONFLICT (client_id, key) DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT ok FROM active) AS active,
           EXISTS (SELECT 1 FROM nonce) AS fresh,
           EXISTS (SELECT 1 FROM claimed) AS claimed
    """


def _statement(active: ActiveExpression) -> LiteralString:
    # `active.sql` is a LiteralString from its owner's code, never input.
    return _ACTIVE_OPEN + active.sql + _ACTIVE_CLOSE_AND_CLAIMS


class Admission:
    """Runs the one statement; refuses with the same 401s the separate checks gave."""

    def __init__(
        self, engine: AsyncEngine, active: ActiveExpression, nonce_ttl_s: int = NONCE_TTL_S
    ) -> None:
        """`engine` must be an autocommit one (db.create_autocommit_engine)."""
        self._engine = engine
        self._sessions = session_factory(engine)
        self._sql = _statement(active)
        self._nonce_ttl_s = nonce_ttl_s
        self._next_cleanup = 0.0

    async def admit(
        self, client_id: str, key_id: str, nonce: str, claim: idempotency.ClaimRequest | None
    ) -> idempotency.EarlyClaim:
        token = secrets.token_hex(16)
        params = {
            "client_id": client_id,
            "key_id": key_id,
            "nonce": nonce,
            "nonce_ttl_s": self._nonce_ttl_s,
            "claim": claim is not None,
            "method": claim.method if claim else None,
            "path": claim.path if claim else None,
            "key": claim.key if claim else None,
            "fingerprint": claim.body_fingerprint if claim else None,
            "token": token,
            "ttl_s": claim.ttl_s if claim else 0,
            "stale_s": claim.stale_claim_s if claim else 0,
        }
        rows = await fetch_rows_pooled(self._engine, self._sql, params)
        if time.monotonic() >= self._next_cleanup:
            self._next_cleanup = time.monotonic() + NONCE_CLEANUP_INTERVAL_S
            async with self._sessions() as session:
                await delete_expired_nonces(session)
                await session.commit()
        row = rows[0]
        if not row.active:
            raise InvalidTokenError("the client or its key is disabled")
        if not row.fresh:
            raise ReplayedRequestError("this (keyid, nonce) pair was already used")
        if claim is None:
            return idempotency.EarlyClaim()
        if row.claimed:
            return idempotency.EarlyClaim(idempotency.Claim(client_id, claim.key, token), True)
        return idempotency.EarlyClaim(None, True)
