"""Single use of each `(keyid, nonce)` pair of a signed request, for 600 s."""

from __future__ import annotations

import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.request_auth.refusals import ReplayedRequestError

NONCE_TTL_S = 600
NONCE_CLEANUP_INTERVAL_S = 30
NONCE_CLEANUP_BATCH = 1000

_INSERT_NONCE = text(
    """
    INSERT INTO platform.seen_nonces (key_id, nonce, expires_at)
    VALUES (:key_id, :nonce, now() + make_interval(secs => :ttl_s))
    ON CONFLICT (key_id, nonce) DO NOTHING
    RETURNING 1
    """
)
_DELETE_EXPIRED_NONCES = text(
    """
    DELETE FROM platform.seen_nonces
    WHERE ctid IN (
        SELECT ctid FROM platform.seen_nonces WHERE expires_at <= now() LIMIT :batch
    )
    """
)


class SeenNonces:
    """Records each pair once; a second use is 401 `replayed_request`.

    Expired pairs are deleted in small batches at most every NONCE_CLEANUP_INTERVAL_S, by
    whichever request comes along, so the table stays small without a separate job.
    """

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], ttl_s: int = NONCE_TTL_S
    ) -> None:
        self._sessions = sessions
        self._ttl_s = ttl_s
        self._next_cleanup = 0.0

    async def claim(self, keyid: str, nonce: str) -> None:
        # `sessions` are autocommit with synchronous_commit=off (db.create_autocommit_engine):
        # one round trip, and no wait for the WAL flush. Any effect of this request commits
        # synchronously later, which flushes this record first; a crash before that loses
        # only the nonce of a request that had no effect. The commit below is then a no-op.
        async with self._sessions() as session:
            inserted = await session.execute(
                _INSERT_NONCE, {"key_id": keyid, "nonce": nonce, "ttl_s": self._ttl_s}
            )
            claimed = inserted.first() is not None
            if time.monotonic() >= self._next_cleanup:
                self._next_cleanup = time.monotonic() + NONCE_CLEANUP_INTERVAL_S
                await delete_expired_nonces(session)
            await session.commit()
        if not claimed:
            raise ReplayedRequestError("this (keyid, nonce) pair was already used")


async def delete_expired_nonces(
    session: AsyncSession, batch_size: int = NONCE_CLEANUP_BATCH
) -> int:
    """Delete up to `batch_size` nonces past their 600 s retention; returns how many went.

    An expired pair can never be accepted again anyway, because its `created` is then far
    outside the freshness window.
    """
    result = await session.execute(
        _DELETE_EXPIRED_NONCES,
        {"batch": batch_size},
    )
    deleted: int = result.rowcount  # type: ignore[attr-defined]
    return deleted
