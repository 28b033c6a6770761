"""Bounds on failed authentications, per client id and per source address.

A failed token request costs scrypt (tens of ms, ~16 MiB) and an audit row; a rejected
bearer token costs an audit row. Without a bound, an unauthenticated flood turns into CPU
and audit-log growth. Each (scope, key) may fail `limit` times per fixed window; after
that the caller gets 429 `rate_limited` with `Retry-After` until the window ends, and is
neither verified nor audited per attempt: refused attempts are only counted, and the
worker writes one audit summary per finished window (`flush_finished_windows`).

The counters live in PostgreSQL (`platform.auth_failures`), so every replica enforces the
same bound. To keep the hot path free of an extra query, a replica consults the table
only for keys that failed recently in this process (a bounded in-process hint): a key
never seen failing here costs nothing, and a flooder spread over replicas gets at most
one unchecked failure per replica before the shared count applies.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform import audit
from app.platform.errors import DomainError

WINDOW_S = 60
FAILURES_PER_CLIENT = 10
FAILURES_PER_ADDRESS = 100
HINT_CAPACITY = 10_000
FLUSH_BATCH = 500


class RateLimitedError(DomainError):
    status: ClassVar[int] = 429
    title: ClassVar[str] = "Too many failed authentications"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed authentications; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s
        self.headers["Retry-After"] = str(retry_after_s)


@dataclass(frozen=True, slots=True)
class Subject:
    scope: str  # "client" | "address"
    key: str


_COUNT = text(
    """
    SELECT scope, key, failures FROM platform.auth_failures
    WHERE window_start = :window AND (scope, key) IN (SELECT * FROM unnest(
        CAST(:scopes AS text[]), CAST(:keys AS text[])))
    """
)
_FAILED = text(
    """
    INSERT INTO platform.auth_failures (scope, key, window_start, failures)
    SELECT scope, key, :window, 1
    FROM unnest(CAST(:scopes AS text[]), CAST(:keys AS text[])) AS s(scope, key)
    ON CONFLICT (scope, key, window_start)
    DO UPDATE SET failures = platform.auth_failures.failures + 1
    """
)
_BLOCKED = text(
    """
    UPDATE platform.auth_failures SET blocked = blocked + 1
    WHERE window_start = :window AND scope = :scope AND key = :key
    """
)
_FINISHED = text(
    """
    DELETE FROM platform.auth_failures
    WHERE ctid IN (
        SELECT ctid FROM platform.auth_failures WHERE window_start < :current
        ORDER BY window_start LIMIT :batch
    )
    RETURNING scope, key, window_start, failures, blocked
    """
)


class FailureLimiter:
    """Check before verifying credentials; report each failure after."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        window_s: int = WINDOW_S,
        per_client: int = FAILURES_PER_CLIENT,
        per_address: int = FAILURES_PER_ADDRESS,
    ) -> None:
        self._sessions = sessions
        self._window_s = window_s
        self._limits = {"client": per_client, "address": per_address}
        # key -> monotonic time of its last failure seen here; bounded, oldest evicted.
        self._recent: OrderedDict[Subject, float] = OrderedDict()

    def _window(self) -> tuple[int, int]:
        now = int(time.time())
        start = now - now % self._window_s
        return start, start + self._window_s - now

    def _noted(self, subject: Subject) -> bool:
        seen = self._recent.get(subject)
        return seen is not None and time.monotonic() - seen < self._window_s

    def _note(self, subject: Subject) -> None:
        self._recent[subject] = time.monotonic()
        self._recent.move_to_end(subject)
        while len(self._recent) > HINT_CAPACITY:
            self._recent.popitem(last=False)

    async def check(self, subjects: list[Subject]) -> None:
        """Raise RateLimitedError (429) when any subject used up its failures this window."""
        candidates = [subject for subject in subjects if self._noted(subject)]
        if not candidates:
            return
        start, remaining_s = self._window()
        async with self._sessions() as session, session.begin():
            rows = (
                await session.execute(
                    _COUNT,
                    {
                        "window": _at(start),
                        "scopes": [s.scope for s in candidates],
                        "keys": [s.key for s in candidates],
                    },
                )
            ).all()
            for row in rows:
                if row.failures >= self._limits[row.scope]:
                    await session.execute(
                        _BLOCKED, {"window": _at(start), "scope": row.scope, "key": row.key}
                    )
                    raise RateLimitedError(max(1, remaining_s))

    async def failed(self, subjects: list[Subject]) -> None:
        """Count one failed authentication against every subject."""
        if not subjects:
            return
        start, _ = self._window()
        for subject in subjects:
            self._note(subject)
        async with self._sessions() as session, session.begin():
            await session.execute(
                _FAILED,
                {
                    "window": _at(start),
                    "scopes": [s.scope for s in subjects],
                    "keys": [s.key for s in subjects],
                },
            )


def _at(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def subjects(client_id: str | None, address: str | None) -> list[Subject]:
    """The counters a failure from `address` claiming `client_id` counts against. Values
    are bounded and escaped first: they come from unauthenticated callers."""
    found: list[Subject] = []
    if client_id:
        found.append(Subject("client", audit.safe_text(client_id) or ""))
    if address:
        found.append(Subject("address", audit.safe_text(address) or ""))
    return found


async def flush_finished_windows(session: AsyncSession, window_s: int = WINDOW_S) -> int:
    """Write one audit summary per finished window that refused attempts, delete the
    finished windows, and return how many summaries were written (bounded per call)."""
    now = int(time.time())
    rows = (
        await session.execute(
            _FINISHED, {"current": _at(now - now % window_s), "batch": FLUSH_BATCH}
        )
    ).all()
    written = 0
    for row in rows:
        if row.blocked == 0:
            continue
        await audit.record(
            session,
            audit.AuditEvent(
                actor=row.key if row.scope == "client" else None,
                event_type="auth.rate_limited",
                outcome="failure",
                code="rate_limited",
                request_id=None,
                origin_ip=row.key if row.scope == "address" else None,
                details={
                    "scope": row.scope,
                    "window_start": row.window_start.isoformat(),
                    "window_s": window_s,
                    "failures": row.failures,
                    "refused_attempts": row.blocked,
                },
            ),
        )
        written += 1
    return written
