"""A transaction's statements sent in ONE write, answered in one read: libpq's pipeline,
driven directly.

psycopg's pipeline flushes the socket after every statement (each `execute` sends its
packet and polls for answers), so a five-statement commit cost five packets, five wake-ups
of the PostgreSQL backend and about 150 µs of client CPU per statement (issue 16). libpq
itself only queues a statement in pipeline mode; here BEGIN, the statements and COMMIT
are queued, then one Sync, one flush, and one wait for every answer.

The statements are psycopg's (`%(name)s` placeholders, run as server-side prepared
statements, prepared on each connection the first time it sees them, in the same
write). Their parameters are text: str, int, bool or None; structured values travel as
JSON text, which costs far less to send than psycopg's arrays. An error is psycopg's own
exception for the first statement that failed, after which PostgreSQL skipped the rest,
COMMIT included, so nothing of the transaction is kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import weakref
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, LiteralString

import psycopg
import psycopg.errors
from psycopg import pq
from psycopg.errors import error_from_result

from app.platform.errors import InvariantViolation

# Longer than any statement may run (statement_timeout, db.create_engine): an answer
# that never comes means a broken connection, which the caller then discards.
ANSWER_TIMEOUT_S = 30.0
# Statement texts come from code, so they are few; the cap only guards against a bug.
MAX_STATEMENTS = 256

_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")
_FATAL = pq.ExecStatus.FATAL_ERROR
_PARSED = pq.ExecStatus.COMMAND_OK
_SYNC = pq.ExecStatus.PIPELINE_SYNC
_TUPLES = pq.ExecStatus.TUPLES_OK
_BEGIN = b"BEGIN"
_OURS = b"SELECT name FROM pg_prepared_statements WHERE name LIKE 'mp\\_%'"
_COMMIT = b"COMMIT"
_ROLLBACK = b"ROLLBACK"


@dataclass(frozen=True, slots=True)
class _Statement:
    name: bytes
    text: bytes
    parameters: tuple[str, ...]


_statements: dict[str, _Statement] = {}
# The statements each connection has prepared (server-side statements live as long as it).
_prepared: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], set[bytes]] = (
    weakref.WeakKeyDictionary()
)


def _statement(sql: LiteralString) -> _Statement:
    """`sql` with `$n` placeholders, and the name it is prepared under."""
    found = _statements.get(sql)
    if found is not None:
        return found
    if len(_statements) >= MAX_STATEMENTS:
        raise InvariantViolation("db.wire_statements", "more statement texts than expected")
    names: list[str] = []

    def numbered(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    text = _PLACEHOLDER.sub(numbered, sql)
    # Not psycopg's `_pg3_` names, so the two never collide on one connection.
    digest = hashlib.blake2b(sql.encode(), digest_size=10).hexdigest()
    found = _Statement(f"mp_{digest}".encode(), text.encode(), tuple(names))
    _statements[sql] = found
    return found


def _text(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int):
        return str(value).encode()
    raise InvariantViolation(
        "db.wire_parameter", f"a {type(value).__name__} parameter: send it as JSON text"
    )


async def commit(
    driver: psycopg.AsyncConnection[Any],
    statements: Sequence[tuple[LiteralString, Mapping[str, Any]]],
) -> None:
    """Run `statements` in one transaction (BEGIN .. COMMIT) on an idle `driver`.

    Raises psycopg.Error for the first statement that failed (the transaction block is
    then left aborted: the caller rolls it back). Any other exception (a timeout, a
    cancellation) leaves the connection mid-exchange: the caller must discard it.
    """
    await _run(driver, statements, block=True)


async def fetch(
    driver: psycopg.AsyncConnection[Any], sql: LiteralString, params: Mapping[str, Any]
) -> list[Any]:
    """Run one statement on an idle autocommit `driver` and return its rows as named
    tuples (columns of type boolean, integer or text). Without a BEGIN, the statement is
    its own transaction, committed at the Sync; errors are raised as by `commit`."""
    if not driver.autocommit:
        raise InvariantViolation("db.wire_fetch", "expected an autocommit connection")
    result = await _run(driver, [(sql, params)], block=False)
    return [] if result is None else _rows(result)


async def rollback(driver: psycopg.AsyncConnection[Any]) -> None:
    """End the aborted transaction block a refused `commit` left, in one round trip.

    Not psycopg's `rollback()`: when psycopg has prepared statements of its own, that
    one also sends DEALLOCATE ALL, which drops ours too, and the next `commit` on this
    connection would pay a round trip to find that out (see `_run`)."""
    pgconn = driver.pgconn
    pgconn.enter_pipeline_mode()
    pgconn.send_query_params(_ROLLBACK, None)
    pgconn.pipeline_sync()
    answers = await _answers(pgconn)
    pgconn.exit_pipeline_mode()
    for results in answers:
        for result in results:
            if result.status == _FATAL:
                raise error_from_result(result, encoding=driver.info.encoding)


async def _run(
    driver: psycopg.AsyncConnection[Any],
    statements: Sequence[tuple[LiteralString, Mapping[str, Any]]],
    *,
    block: bool,
) -> pq.abc.PGresult | None:
    prepared = _prepared.get(driver)
    if prepared is None:
        prepared = _prepared[driver] = set()
    # Everything that can refuse is done before the first command is queued.
    bound = [
        (statement, [_text(params[name]) for name in statement.parameters])
        for statement, params in ((_statement(sql), params) for sql, params in statements)
    ]
    try:
        return await _exchange(driver, bound, prepared, block=block)
    except psycopg.errors.InvalidSqlStatementName:
        # Our statements were deallocated behind our back: psycopg's rollback sends
        # DEALLOCATE ALL when it had prepared statements of its own. Nothing ran (the
        # error aborted the transaction): ask the server which of ours it still has,
        # and try once more, preparing the others.
        await driver.rollback()
        async with driver.cursor() as cursor:
            await cursor.execute(_OURS)
            rows = await cursor.fetchall()
        await driver.rollback()  # the look-up's own transaction, if not autocommit
        prepared.clear()
        prepared.update(str(name).encode() for (name,) in rows)
        return await _exchange(driver, bound, prepared, block=block)


async def _exchange(
    driver: psycopg.AsyncConnection[Any],
    bound: list[tuple[_Statement, list[bytes | None]]],
    prepared: set[bytes],
    *,
    block: bool,
) -> pq.abc.PGresult | None:
    """Send, then read; the last statement's result."""
    pgconn = driver.pgconn
    parsing: list[bytes | None] = []  # per command sent: the statement it prepares
    pgconn.enter_pipeline_mode()
    if block:
        pgconn.send_query_params(_BEGIN, None)
        parsing.append(None)
    last = 0
    for statement, values in bound:
        if statement.name not in prepared and statement.name not in parsing:
            pgconn.send_prepare(statement.name, statement.text)
            parsing.append(statement.name)
        pgconn.send_query_prepared(statement.name, values)
        last = len(parsing)
        parsing.append(None)
    if block:
        pgconn.send_query_params(_COMMIT, None)
        parsing.append(None)
    pgconn.pipeline_sync()
    answers = await _answers(pgconn)
    pgconn.exit_pipeline_mode()
    failure: psycopg.Error | None = None
    for name, results in zip(parsing, answers, strict=True):
        for result in results:
            if result.status == _FATAL and failure is None:
                failure = error_from_result(result, encoding=driver.info.encoding)
            elif name is not None and result.status == _PARSED:
                prepared.add(name)
    if failure is not None:
        raise failure
    return answers[last][-1] if answers[last] else None


def _boolean(value: bytes) -> bool:
    return value == b"t"


def _decoded(value: bytes) -> str:
    return value.decode()


# Text-format loaders by type OID: boolean, int8, int2, int4, name, text, varchar.
_LOADERS: dict[int, Callable[[bytes], Any]] = {
    16: _boolean,
    20: int,
    21: int,
    23: int,
    19: _decoded,
    25: _decoded,
    1043: _decoded,
}
_ROW_TYPES: dict[tuple[str, ...], Any] = {}


def _rows(result: pq.abc.PGresult) -> list[Any]:
    if result.status != _TUPLES:
        return []
    columns = range(result.nfields)
    names = tuple((result.fname(column) or b"?").decode() for column in columns)
    row_type: Any = _ROW_TYPES.get(names)
    if row_type is None:
        if len(_ROW_TYPES) >= MAX_STATEMENTS:
            raise InvariantViolation("db.wire_statements", "more row shapes than expected")
        row_type = _ROW_TYPES[names] = namedtuple("Row", names, rename=True)
    loaders = []
    for column in columns:
        loader = _LOADERS.get(result.ftype(column))
        if loader is None:
            raise InvariantViolation("db.wire_column", f"column {names[column]}: type not loaded")
        loaders.append(loader)
    rows = []
    for row in range(result.ntuples):
        values = [result.get_value(row, column) for column in columns]
        rows.append(
            row_type(
                *(None if v is None else load(v) for v, load in zip(values, loaders, strict=True))
            )
        )
    return rows


async def _answers(pgconn: pq.abc.PGconn) -> list[list[pq.abc.PGresult]]:
    """Flush what is queued, then read every command's results up to the Sync."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ANSWER_TIMEOUT_S
    fileno = pgconn.socket
    while pgconn.flush():
        await _ready(loop, fileno, deadline, writing=True)
    answers: list[list[pq.abc.PGresult]] = []
    current: list[pq.abc.PGresult] = []
    while True:
        await _ready(loop, fileno, deadline, writing=False)
        pgconn.consume_input()
        while not pgconn.is_busy():
            result = pgconn.get_result()
            if result is None:
                if not current:
                    break
                answers.append(current)
                current = []
            elif result.status == _SYNC:
                return answers
            else:
                current.append(result)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(
            psycopg.OperationalError(f"no answer from the database in {ANSWER_TIMEOUT_S} s")
        )


async def _ready(
    loop: asyncio.AbstractEventLoop, fileno: int, deadline: float, *, writing: bool
) -> None:
    """Wait until the socket can be read (or written), at most until `deadline`."""
    waiter: asyncio.Future[None] = loop.create_future()
    if writing:
        loop.add_writer(fileno, _wake, waiter)
    else:
        loop.add_reader(fileno, _wake, waiter)
    timer = loop.call_at(deadline, _expire, waiter)
    try:
        await waiter
    finally:
        timer.cancel()
        if writing:
            loop.remove_writer(fileno)
        else:
            loop.remove_reader(fileno)
