"""The request path's OPA transport against servers that misbehave the way networks do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from app.platform.opa import Opa, OpaUnavailableError
from app.platform.opa_http import MAX_ANSWER_BYTES, OpaDataApi

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
DECISION = b'{"result":{"allow":true},"decision_id":"d-1"}'


def _answer(body: bytes = DECISION, *, close: bool = False) -> bytes:
    connection = b"Connection: close\r\n" if close else b""
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + connection
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return head + await reader.readexactly(length)


class _Server:
    """A local HTTP server that counts connections and requests."""

    def __init__(self, on_request: Callable[[int, asyncio.StreamWriter], Awaitable[bool]]) -> None:
        self.connections = 0
        self.requests: list[bytes] = []
        self._on_request = on_request
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while (request := await _read_request(reader)) is not None:
                self.requests.append(request)
                if not await self._on_request(len(self.requests), writer):
                    break
        finally:
            writer.close()

    async def __aenter__(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()


async def _keep_alive(_: int, writer: asyncio.StreamWriter) -> bool:
    writer.write(_answer())
    await writer.drain()
    return True


def _connections_and_requests(
    on_request: Callable[[int, asyncio.StreamWriter], Awaitable[bool]],
    decisions: int,
    *,
    pause_s: float = 0.0,
) -> tuple[int, int]:
    """Ask `decisions` times, each answered 200 (pausing between them); then how many
    connections and requests the server saw."""

    async def run() -> tuple[int, int]:
        server = _Server(on_request)
        async with server as port:
            api = OpaDataApi("127.0.0.1", port, tls=False, timeout_s=2)
            for _ in range(decisions):
                answer = await api.post("moneypath/authz/decision", b'{"input":{}}')
                assert (answer.status, answer.body) == (200, DECISION)
                await asyncio.sleep(pause_s)
            await api.close()
        return server.connections, len(server.requests)

    return asyncio.run(run())


def test_decisions_share_one_kept_connection_when_opa_keeps_it_open() -> None:
    assert _connections_and_requests(_keep_alive, 5) == (1, 5)


def test_the_request_is_a_json_post_to_the_data_api_when_sent() -> None:
    async def scenario() -> bytes:
        server = _Server(_keep_alive)
        async with server as port:
            api = OpaDataApi("127.0.0.1", port, tls=False, timeout_s=2)
            await api.post("moneypath/authz/decision", b'{"input":{"a":1}}')
            await api.close()
        return server.requests[0]

    request = asyncio.run(scenario())
    assert request.startswith(b"POST /v1/data/moneypath/authz/decision HTTP/1.1\r\n")
    assert b"\r\nContent-Type: application/json\r\n" in request
    assert request.endswith(b'\r\n\r\n{"input":{"a":1}}')


def test_a_new_connection_is_opened_when_opa_asks_to_close_after_answering() -> None:
    async def close_each(_: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(_answer(close=True))
        await writer.drain()
        return False

    assert _connections_and_requests(close_each, 3) == (3, 3)


def test_a_kept_connection_opa_closed_while_idle_is_replaced_without_failing() -> None:
    """OPA restarted between two decisions: the second one is sent once, on a new connection."""

    async def hang_up_after_answering(_: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(_answer())  # says keep-alive, then closes anyway
        await writer.drain()
        return False

    # The pause lets the close reach us while the connection is idle.
    assert _connections_and_requests(hang_up_after_answering, 2, pause_s=0.1) == (2, 2)


def _refused_by(
    on_request: Callable[[int, asyncio.StreamWriter], Awaitable[bool]],
) -> tuple[str, int]:
    """What `Opa.decide` refuses with against this server, and how many requests it got."""

    async def run() -> tuple[str, int]:
        server = _Server(on_request)
        async with server as port:
            opa = Opa(f"http://127.0.0.1:{port}", timeout_ms=300)
            try:
                with pytest.raises(OpaUnavailableError) as refused:
                    await opa.decide("moneypath/authz/decision", {"action": "x"})
            finally:
                await opa.close()
        return str(refused.value), len(server.requests)

    return asyncio.run(run())


def test_decision_fails_closed_once_when_opa_answers_garbage() -> None:
    async def garbage(_: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()
        return True

    message, requests = _refused_by(garbage)
    assert "unreachable" in message
    assert requests == 1


def test_decision_fails_closed_when_the_answer_is_too_large() -> None:
    async def flood(_: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(_answer(b"[" + b"1," * MAX_ANSWER_BYTES + b"1]"))
        await writer.drain()
        return True

    message, _ = _refused_by(flood)
    assert "unreachable" in message


def test_decision_fails_closed_within_its_timeout_when_opa_never_answers() -> None:
    async def silent(_: int, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(5)
        return False

    started = time.monotonic()
    message, _ = _refused_by(silent)
    assert "unreachable" in message
    assert time.monotonic() - started < 2


def test_decision_fails_closed_when_opa_answers_an_error_status() -> None:
    async def error(_: int, writer: asyncio.StreamWriter) -> bool:
        body = b'{"code":"internal_error"}'
        writer.write(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        await writer.drain()
        return True

    message, _ = _refused_by(error)
    assert message == "OPA answered 500"


def test_a_kept_connection_that_breaks_before_answering_is_retried_once_on_a_new_one() -> None:
    """The close raced our request on a kept connection: one retry, on a fresh connection."""

    async def drop_the_second_request_on_a_connection(
        count: int, writer: asyncio.StreamWriter
    ) -> bool:
        if count == 2:
            return False  # closes without answering
        writer.write(_answer())
        await writer.drain()
        return True

    assert _connections_and_requests(drop_the_second_request_on_a_connection, 2) == (2, 3)


def test_a_fresh_connection_that_breaks_is_not_retried() -> None:
    async def always_drop(_: int, writer: asyncio.StreamWriter) -> bool:
        return False

    message, requests = _refused_by(always_drop)
    assert "unreachable" in message
    assert requests == 1
