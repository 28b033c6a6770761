"""Async SQLAlchemy engine and sessions, plus the bounded retry for transient conflicts."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import MetaData, event, text
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

# The hot path's statements, sent straight through psycopg (db_pipeline.py); re-exported
# here, where every caller imports them from.
from app.platform.db_pipeline import (
    _BEFORE_COMMIT,
    _CONNECTED,
    _EXPLICIT,
    _WITH_COMMIT,
    CommitStep,
    Refusal,
    _abandon,
    _Queued,
    _send_and_commit,
    at_commit,
    fetch_rows,
    fetch_rows_pooled,
    send_with_commit,
)

__all__ = [
    "CommitStep",
    "Refusal",
    "at_commit",
    "fetch_rows",
    "fetch_rows_pooled",
    "send_with_commit",
]

T = TypeVar("T")

# SQLSTATEs that mean "try the whole transaction again": serialization failure,
# deadlock detected, and the lock timeout we set on hot rows.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
MAX_TRANSACTION_ATTEMPTS = 5
RETRY_BASE_DELAY_S = 0.005
RETRY_MAX_DELAY_S = 0.2
# A pooled connection idle for longer than this is pinged before use; one handed back
# and forth under load is not (SQLAlchemy's pool_pre_ping would cost a round trip on
# every checkout, four per signed request).
PING_AFTER_IDLE_S = 1.0

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """The single declarative base; each domain's tables live in that domain's schema."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def async_url(url: str) -> str:
    """Turn a libpq-style URL into the SQLAlchemy psycopg 3 async URL."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError("expected a postgresql:// URL")


def libpq_url(url: str) -> str:
    """The plain postgresql:// form, for psql, pgbench and psycopg."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    raise ValueError("expected a postgresql:// URL")


def _ping_when_idle(engine: AsyncEngine, idle_s: float = PING_AFTER_IDLE_S) -> AsyncEngine:
    """Check a pooled connection before use when it sat idle: a database restart or an
    idle-connection reaper is then noticed and the connection replaced, as pool_pre_ping
    would, without a ping round trip on every busy checkout."""
    dialect = engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _returned(dbapi_connection: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        returned_at = record.info.get("returned_at")
        if returned_at is None or time.monotonic() - returned_at < idle_s:
            return  # fresh from connect, or in use a moment ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool replaces this connection with a new one and checks out again.
            raise DisconnectionError("pooled connection failed its ping") from error

    return engine


# psycopg prepares any statement run five times on a connection, and then sends DEALLOCATE
# ALL with the ROLLBACK that ends a read session (SQLAlchemy's reset on check-in). That
# also dropped the hot path's own prepared statements (db_wire), so the next signed
# transfer on the connection paid a failed round trip to prepare them again. Only the hot
# path's statements are prepared on purpose (db_wire; db_pipeline's `prepare=True`).
NO_AUTOMATIC_PREPARE = None


def create_engine(
    url: str, *, pool_size: int = 10, statement_timeout_ms: int = 15_000
) -> AsyncEngine:
    # A statement timeout bounds every query, so a stuck lock cannot hang a request forever.
    return _refuse_autocommit(
        _ping_when_idle(
            create_async_engine(
                async_url(url),
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_timeout=10,
                connect_args={
                    "connect_timeout": 5,
                    "options": f"-c statement_timeout={statement_timeout_ms}",
                    # See NO_AUTOMATIC_PREPARE.
                    "prepare_threshold": NO_AUTOMATIC_PREPARE,
                },
            )
        )
    )


def _refuse_autocommit(engine: AsyncEngine) -> AsyncEngine:
    """Never hand out a connection of a transactional engine left in autocommit mode (an
    explicit transaction block whose clean-up failed, see `_go_explicit`): its
    statements would each commit alone. The pool replaces it with a new one."""

    @event.listens_for(engine.sync_engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if dbapi_connection.autocommit:
            raise DisconnectionError("pooled connection was left in autocommit mode")

    return engine


def create_autocommit_engine(
    url: str, *, pool_size: int = 10, statement_timeout_ms: int = 15_000
) -> AsyncEngine:
    """An engine for single-statement claims (nonces, idempotency keys) and lookups.

    Each statement commits on its own (no BEGIN/COMMIT round trips) and does not wait for
    its WAL flush (`synchronous_commit=off`). That is safe only for rows whose loss in a
    crash is harmless until a later synchronous commit, which flushes all WAL written
    before it: see idempotency.claim_at_once and Rfc9421Verifier._claim_nonce. Effects
    never use this engine.
    """
    return _ping_when_idle(
        create_async_engine(
            async_url(url),
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=10,
            isolation_level="AUTOCOMMIT",
            # No rollback when a connection goes back to the pool: in autocommit mode no
            # transaction block is ever left open (nothing here sends BEGIN), and the
            # rollback call cost the admission of every signed request about 50 µs of
            # CPU (issue 16). SQLAlchemy documents None for autocommit connections.
            pool_reset_on_return=None,
            connect_args={
                "connect_timeout": 5,
                "options": (
                    f"-c statement_timeout={statement_timeout_ms} -c synchronous_commit=off"
                ),
                "prepare_threshold": NO_AUTOMATIC_PREPARE,
            },
        )
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def is_retryable(error: BaseException) -> bool:
    if isinstance(error, DBAPIError):
        sqlstate = getattr(error.orig, "sqlstate", None)
        return sqlstate in RETRYABLE_SQLSTATES
    return False


async def run_in_transaction(
    sessions: async_sessionmaker[AsyncSession],
    work: Callable[[AsyncSession], Awaitable[T]],
    *,
    attempts: int = MAX_TRANSACTION_ATTEMPTS,
) -> T:
    """Run `work` in one transaction, retrying deadlocks and serialization failures.

    Retries are capped and use full jitter so that colliding transactions spread out
    instead of colliding again in lock-step. Any other error propagates at once. (The
    other retry loops run on stamina, `platform.retries`; this one is on every write's
    path, where setting up stamina's loop cost about 40 µs a call, measured.)
    """
    for attempt in range(1, attempts + 1):
        try:
            return await _attempt(sessions, work)
        except DBAPIError as error:
            if not is_retryable(error) or attempt == attempts:
                raise
            cap = min(RETRY_MAX_DELAY_S, RETRY_BASE_DELAY_S * 2**attempt)
            await asyncio.sleep(random.uniform(0, cap))  # noqa: S311 - jitter, not crypto
    raise RuntimeError("unreachable: the loop either returns or raises")


def _used(session: AsyncSession) -> bool:
    """Whether the session began a transaction or holds objects a commit would flush."""
    return session.in_transaction() or bool(session.new or session.dirty or session.deleted)


async def _attempt(
    sessions: async_sessionmaker[AsyncSession], work: Callable[[AsyncSession], Awaitable[T]]
) -> T:
    """One try of `run_in_transaction`.

    The session begins lazily (SQLAlchemy's autobegin, on its first statement) and is
    committed and closed only if it was used: a signed transfer queues every statement for
    the pooled commit pipeline and never touches the session's own connection, and an
    explicit `session.begin()` with its commit and close cost about 85 µs of CPU per
    request for nothing (issue 16: 90-100 µs a call before, 8-9 after, in a tight loop).
    """
    session = sessions()
    steps: list[CommitStep] = []
    queued: list[_Queued] = []
    session.info[_BEFORE_COMMIT] = steps
    session.info[_WITH_COMMIT] = queued
    try:
        result = await work(session)
        # From here on `at_commit` and `send_with_commit` run at once: the lists are final.
        del session.info[_BEFORE_COMMIT]
        del session.info[_WITH_COMMIT]
        for step in steps:
            await step(session)
        if queued or _EXPLICIT in session.info:
            await _send_and_commit(session, queued)
        if _used(session):
            await session.commit()
    except BaseException:
        await _abandon(session)
        await session.close()  # rolls back a transaction the session began
        raise
    if _CONNECTED in session.info:
        await session.close()
    return result


async def ensure_month_partitions(session: AsyncSession, table: str, months_ahead: int) -> int:
    """Create `table`'s monthly partitions through `months_ahead`; returns how many were made.

    `table` is a schema-qualified name of a range-partitioned table we own; the SQL
    function (platform migration 0001) is idempotent, so any worker may call this.
    """
    made = (
        await session.execute(
            text("SELECT platform.ensure_month_partitions(CAST(:table AS regclass), :months)"),
            {"table": table, "months": months_ahead},
        )
    ).scalar_one()
    return int(made)
